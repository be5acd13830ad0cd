# -*- test-case-name: tests.test_chain -*-
"""
The filter chain: runs enabled filters in their configured order.

Each call is synchronous when every filter answers synchronously (the
common case costs a loop over a short list and nothing when no filter of
that kind is enabled) and becomes a L{Deferred} at the first filter that
returns one.  A filter that raises, fails its Deferred or misses the
deadline is logged with its name; the exchange then gets 500 (request and
tunnel side) or 502 (response side), or, with C{on_error = "pass"}, goes
on as if that filter were not there (for a body filter whose
C{bodyTransform} raises, too: 502, or skipped).  A body transform that
raises ends its response: a 502 if nothing of it has reached the client
yet, else the response is cut short; with C{on_error = "pass"} the rest of
the body goes through untouched instead.  Filters can never take the proxy
down.
"""

from __future__ import annotations

from typing import Any, Callable, Optional, Union

from twisted.internet.defer import Deferred
from twisted.logger import Logger
from twisted.python.failure import Failure

from proxyapp.interfaces import (
    IBodyFilter,
    IBodyTransform,
    IRequestFilter,
    IResponseFilter,
    ITunnelFilter,
)
from proxyapp.message import (
    RequestHead,
    Response,
    ResponseHead,
    errorResponse,
    messageDefect,
)

log = Logger()

# What a filter may raise and the proxy answers for: anything but Ctrl-C
# (a plugin calling sys.exit while handling a request must not leave the
# client without an answer).
_CAUGHT = (Exception, SystemExit, GeneratorExit)

FAIL = "fail"
PASS = "pass"


class EnabledFilter:
    """
    One enabled filter with the proxy-level settings of its table.

    @ivar name: the name it was enabled by.
    @ivar filter: the object the factory built.
    @ivar onError: L{FAIL} or L{PASS}.
    """

    __slots__ = ("name", "filter", "onError")

    def __init__(self, name: str, filter: object, onError: str = FAIL) -> None:
        self.name = name
        self.filter = filter
        self.onError = onError

    def __repr__(self) -> str:
        return (
            f"EnabledFilter({self.name!r}, {self.filter!r}, onError={self.onError!r})"
        )


def decided(response: Response, name: str) -> Response:
    """
    Mark C{response} as the decision of filter C{name} (for the access log).
    """
    response.decider = name
    return response


class FilterChain:
    """
    The enabled filters, split by interface, in run order.

    @ivar active: whether any filter is enabled at all (the protocol skips
        the chain entirely otherwise).
    @ivar deadline: seconds a filter's Deferred may take.
    @ivar mayReframe: whether a request filter that is not built in runs
        (it might change a request's framing fields or method, which the
        protocol then checks).
    @ivar mayReframeResponses: the same for response and body filters (the
        protocol then puts a response's framing fields back as the upstream
        sent them, and checks its status).
    """

    def __init__(
        self, filters: list[EnabledFilter], reactor: Any = None, deadline: float = 5.0
    ) -> None:
        self.filters = list(filters)
        self.reactor = reactor
        self.deadline = deadline
        # Steps: (name, function, on_error, whether its results are checked).
        self._request = [(f.name, f.filter.filterRequest, f.onError, _isForeign(f)) for f in filters if IRequestFilter.providedBy(f.filter)]  # type: ignore[attr-defined]
        self._response = [(f.name, f.filter.filterResponse, f.onError, _isForeign(f)) for f in filters if IResponseFilter.providedBy(f.filter)]  # type: ignore[attr-defined]
        self._tunnel = [(f.name, f.filter.filterTunnel, f.onError, _isForeign(f)) for f in filters if ITunnelFilter.providedBy(f.filter)]  # type: ignore[attr-defined]
        self._body = [(f.name, f.filter.bodyTransform, f.onError, _isForeign(f)) for f in filters if IBodyFilter.providedBy(f.filter)]  # type: ignore[attr-defined]
        self.active = bool(
            self._request or self._response or self._tunnel or self._body
        )
        self.hasResponseFilters = bool(self._response)
        self.hasBodyFilters = bool(self._body)
        # Whether a filter may have changed the framing fields: the
        # built-in ones never do (their modules are proxyapp.filters.*).
        self.mayReframe = _anyForeign(filters, IRequestFilter)
        self.mayReframeResponses = _anyForeign(filters, IResponseFilter) or _anyForeign(
            filters, IBodyFilter
        )

    def names(self) -> list[str]:
        """
        @return: the enabled filters' names in run order.
        """
        return [f.name for f in self.filters]

    # -- requests and tunnels --------------------------------------------------

    def filterRequest(
        self, request: RequestHead
    ) -> Union[RequestHead, Response, Deferred]:
        """
        Run the request filters.

        @return: the head to forward, a L{Response} to answer with, or a
            L{Deferred} firing with either.
        """
        return self._run(self._request, 0, request, None, 500, request)

    def filterTunnel(self, request: RequestHead) -> Union[None, Response, Deferred]:
        """
        Run the tunnel filters on a CONNECT request.

        @return: C{None} to allow, a L{Response} to refuse, or a L{Deferred}
            firing with either.
        """

        def call(fn: Callable[..., Any], value: RequestHead) -> Any:
            result = fn(request)
            if isinstance(result, Deferred):
                return result.addCallback(_tunnelAnswer, value)
            return _tunnelAnswer(result, value)

        result = self._run(self._tunnel, 0, request, call, 500, request)
        if isinstance(result, Deferred):
            return result.addCallback(lambda r: None if r is request else r)
        return None if result is request else result

    def filterResponse(
        self, request: RequestHead, response: ResponseHead
    ) -> Union[ResponseHead, Response, Deferred]:
        """
        Run the response filters on a final response head.

        @return: the head to send, a L{Response} replacing the upstream's,
            or a L{Deferred} firing with either.
        """
        return self._run(
            self._response,
            0,
            response,
            lambda fn, value: fn(request, value),
            502,
            request,
        )

    def bodyTransforms(
        self, request: RequestHead, response: ResponseHead
    ) -> Union[list[Any], Response]:
        """
        Ask the body filters for transforms of this response's body.

        @return: the transforms, in run order (often empty); or, if a body
            filter raised, the 502 that replaces the response (the head is
            not out yet), unless that filter may fail open (C{on_error =
            "pass"}): then it is skipped.
        """
        transforms = []
        for name, fn, onError, checked in self._body:
            if checked:
                saved = _snapshot(request)
            try:
                transform = fn(request, response)
            except _CAUGHT:
                answer = self._failed(Failure(), name, onError, 502, request)
                if answer is not None:
                    return answer
                continue
            if checked:
                answer = self._verdict(name, None, response, request, saved, 502)
                if answer is not None:
                    return answer
            if transform is not None:
                transforms.append(_GuardedTransform(name, transform, onError))
        return transforms

    # -- the runner ------------------------------------------------------------

    def _run(
        self,
        steps: list[tuple[str, Callable[..., Any], str, bool]],
        index: int,
        value: Any,
        call: Optional[Callable[[Callable[..., Any], Any], Any]],
        status: int,
        request: RequestHead,
    ) -> Any:
        """
        Run C{steps} from C{index} on C{value}.

        @param call: how to call a step's function with the value, or
            C{None} to call it with the value alone (request filters).
        """
        while index < len(steps):
            name, fn, onError, checked = steps[index]
            saved = _snapshot(request) if checked else None
            try:
                result = fn(value) if call is None else call(fn, value)
            except _CAUGHT:
                result = self._failed(Failure(), name, onError, status, request)
                if result is None:
                    index += 1
                    continue
                return result
            if checked and not isinstance(result, Deferred):
                answer = self._verdict(name, result, value, request, saved, status)
                if answer is not None:
                    return answer
            if result is value:
                # The usual answer: carry on with the same message.
                index += 1
                continue
            if isinstance(result, Deferred):
                return self._await(
                    result, steps, index, value, call, status, request, saved
                )
            if isinstance(result, Response):
                return decided(result, name)
            if result is not None:
                if not isinstance(result, type(value)):
                    answer = self._failed(
                        _wrongType(result, value), name, onError, status, request
                    )
                    if answer is not None:
                        return answer
                else:
                    value = result
            index += 1
        return value

    def _await(
        self,
        d: Deferred,
        steps: list[tuple[str, Callable[..., Any], str, bool]],
        index: int,
        value: Any,
        call: Optional[Callable[[Callable[..., Any], Any], Any]],
        status: int,
        request: RequestHead,
        saved: Optional[tuple[Any, ...]],
    ) -> Deferred:
        name, _, onError, checked = steps[index]
        if self.reactor is not None:
            d.addTimeout(self.deadline, self.reactor)

        def succeeded(result: Any) -> Any:
            if checked:
                answer = self._verdict(name, result, value, request, saved, status)
                if answer is not None:
                    return answer
            if isinstance(result, Response):
                return decided(result, name)
            if result is not None and not isinstance(result, type(value)):
                return failed(_wrongType(result, value))
            return self._run(
                steps,
                index + 1,
                value if result is None else result,
                call,
                status,
                request,
            )

        def failed(failure: Failure) -> Any:
            answer = self._failed(failure, name, onError, status, request)
            if answer is None:
                return self._run(steps, index + 1, value, call, status, request)
            return answer

        return d.addCallbacks(succeeded, failed)

    def _verdict(
        self,
        name: str,
        result: Any,
        value: Any,
        request: RequestHead,
        saved: Any,
        status: int,
    ) -> Optional[Response]:
        """
        Check what a filter that is not built in returned (C{result}) or
        left in place (C{value}, and the request it was shown) with
        L{messageDefect}.

        A malformed message is never passed over (C{on_error = "pass"}):
        what was changed in place cannot be taken back.  The request's
        fields are put back as they were before the filter (C{saved}), so
        that the error answer can be framed and logged.

        @return: the error answer, or C{None} if all is well-formed.
        """
        requestWhy = messageDefect(request)
        if requestWhy is not None:
            _restore(request, saved)
        why = messageDefect(value if result is None else result)
        if why is None and result is not value and result is not None:
            why = messageDefect(value)
        why = why or requestWhy
        if why is None:
            return None
        log.error(
            "filter {name} returned or left a malformed message for {client} {target}: {why}",
            name=name,
            client=_client(request),
            target=_target(request),
            why=why,
        )
        response = errorResponse(
            status,
            f"The filter {name!r} returned a malformed message.",
            _target(request),
        )
        response.reason = f"filter error: malformed message: {why}"
        return decided(response, name)

    def _failed(
        self,
        failure: Failure,
        name: str,
        onError: str,
        status: int,
        request: RequestHead,
    ) -> Optional[Response]:
        """
        Log a failing filter and decide what it means.

        @return: C{None} to carry on without it (C{on_error = "pass"}), or
            the error response.
        """
        from twisted.internet.defer import TimeoutError as DeferredTimeout

        if failure.check(DeferredTimeout):
            why = f"missed its {self.deadline:g} s deadline"
            log.warn(
                "filter {name} {why} for {client} {target}",
                name=name,
                why=why,
                client=_client(request),
                target=_target(request),
            )
        else:
            if failure.check(_WrongType):
                # The proxy's own words: safe to show.
                why = f"failed: {failure.getErrorMessage()}"
            else:
                why = f"failed ({_errorName(failure)})"
            log.failure(
                "filter {name} failed for {client} {target}",
                failure,
                name=name,
                client=_client(request),
                target=_target(request),
            )
        if onError == PASS:
            return None
        response = errorResponse(
            status, f"The filter {name!r} {why}.", _target(request)
        )
        response.reason = f"filter error: {why}"
        return decided(response, name)


# What a filter might replace on a request: every field.
_SAVED = RequestHead.__slots__


def _snapshot(request: RequestHead) -> tuple[Any, ...]:
    """
    @return: the fields of C{request} that a filter might replace.
    """
    return tuple([getattr(request, name) for name in _SAVED])


def _restore(request: RequestHead, saved: tuple[Any, ...]) -> None:
    """
    Put back the fields L{_snapshot} took (a field list changed in place
    stays changed: the proxy only reads and escapes it from now on).
    """
    for name, value in zip(_SAVED, saved):
        setattr(request, name, value)


def _errorName(failure: Failure) -> str:
    """
    @return: what a filter's error page and access record say of its
        exception: the type's name only.  The message may hold anything
        (internals, megabytes, a traceback if C{str()} itself fails); the
        operational log has it in full.
    """
    return getattr(failure.type, "__name__", "error")


def _target(request: RequestHead) -> str:
    """
    @return: the request's target for a message, even if a filter left it
        in a state L{RequestHead.url} cannot decode.
    """
    target = request.target
    return target.decode("latin-1") if type(target) is bytes else "-"


def _isForeign(enabled: EnabledFilter) -> bool:
    """
    @return: whether a filter is not built in (its results are checked:
        the built-in ones, in C{proxyapp.filters}, are trusted).
    """
    return not type(enabled.filter).__module__.startswith("proxyapp.filters.")


def _anyForeign(filters: list[EnabledFilter], interface: Any) -> bool:
    """
    @return: whether a filter that is not built in provides C{interface}.
    """
    return any(_isForeign(f) for f in filters if interface.providedBy(f.filter))


def _wrongType(result: Any, value: Any) -> Failure:
    """
    @return: the failure of a filter that answered with something that is
        neither the kind of message it was given, a L{Response} nor
        C{None}.
    """
    try:
        raise _WrongType(
            f"it returned {type(result).__name__}, not {type(value).__name__},"
            " Response or None"
        )
    except _WrongType:
        return Failure()


def _tunnelAnswer(result: Any, request: RequestHead) -> Any:
    """
    Check a tunnel filter's answer: it allows (C{None}, for which the
    request stands; the request itself, as a request filter would, is
    taken the same way) or refuses (a L{Response}).  Anything else, a new
    L{RequestHead} too (a tunnel cannot be sent elsewhere, and it used to
    allow the tunnel as asked), is a failure of the filter.

    @raise _WrongType: for anything else.
    """
    if result is None or result is request:
        return request
    if isinstance(result, Response):
        return result
    raise _WrongType(f"it returned {type(result).__name__}, not Response or None")


class _WrongType(TypeError):
    """
    A filter answered with something that is not a message.
    """


def _client(request: RequestHead) -> str:
    address = request.clientAddress
    return f"{address[0]}:{address[1]}" if address else "-"


class CutResponse(Exception):
    """
    Raised by an L{IBodyTransform} to end the response it transforms,
    whatever the filter's C{on_error}: cut short, so that the body shows as
    incomplete (no last chunk, or a reset), or, if nothing of the response
    has reached the client yet, replaced by a 502.  The message says why,
    for the logs.
    """


class TransformFailed(Exception):
    """
    A body transform failed and the response must end (raised to the
    protocol by L{_GuardedTransform}): cut short, or a 502 if nothing of it
    has reached the client yet.

    @ivar reason: why, for the logs.
    """

    def __init__(self, reason: str) -> None:
        Exception.__init__(self, reason)
        self.reason = reason


class _GuardedTransform:
    """
    Runs an L{IBodyTransform}.  If it raises L{CutResponse}, or anything
    with C{on_error = "fail"} (the default), the failure is logged and
    L{TransformFailed} tells the protocol to end the response (cut short,
    or a 502 when nothing of it has reached the client yet); with
    C{on_error = "pass"} the rest of the body passes through untouched.
    """

    __slots__ = ("name", "transform", "onError", "broken")

    def __init__(self, name: str, transform: Any, onError: str) -> None:
        self.name = name
        self.transform = transform
        self.onError = onError
        self.broken = False

    def __call__(self, chunk: bytes) -> bytes:
        if self.broken:
            return chunk
        try:
            return self.transform.transform(chunk)
        except _CAUGHT:
            self._break(Failure())
            return chunk

    def finish(self) -> bytes:
        if self.broken:
            return b""
        try:
            return self.transform.finish()
        except _CAUGHT:
            self._break(Failure())
            return b""

    def _break(self, failure: Failure) -> None:
        """
        @raise TransformFailed: unless the rest may pass untouched.
        """
        self.broken = True
        if failure.check(CutResponse):
            why = failure.getErrorMessage()
            log.warn(
                "body filter {name} cut the response short: {why}",
                name=self.name,
                why=why,
            )
            raise TransformFailed(f"body filter {self.name} cut it short: {why}")
        if self.onError == PASS:
            log.failure(
                "body transform of filter {name} raised; the rest of the body passes untouched",
                failure,
                name=self.name,
            )
            return
        log.failure(
            "body transform of filter {name} raised; the response is cut short",
            failure,
            name=self.name,
        )
        raise TransformFailed(f"body filter {self.name} failed ({_errorName(failure)})")


__all__ = [
    "FilterChain",
    "EnabledFilter",
    "decided",
    "FAIL",
    "PASS",
    "IBodyTransform",
    "CutResponse",
    "TransformFailed",
]

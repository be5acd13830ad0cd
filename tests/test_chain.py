# -*- test-case-name: tests.test_chain -*-
"""
Tests for L{proxyapp.chain}: run order, short-circuits, Deferred results
and deadlines, failing filters (500 / 502 or fail-open), tunnel filters and
guarded body transforms.

Deadlines run on a L{Clock}, so nothing here waits for real time.
"""

from __future__ import annotations

from typing import Any, Callable, Optional

from twisted.internet.defer import Deferred, fail, succeed
from twisted.internet.task import Clock
from twisted.logger import LogEvent, capturedLogs, formatEvent
from twisted.trial.unittest import SynchronousTestCase
from zope.interface import implementer
from zope.interface.verify import verifyObject

from proxyapp.chain import (
    FAIL,
    PASS,
    CutResponse,
    EnabledFilter,
    FilterChain,
    TransformFailed,
)
from proxyapp.interfaces import (
    IBodyFilter,
    IBodyTransform,
    IRequestFilter,
    IResponseFilter,
    ITunnelFilter,
)
from proxyapp.message import RequestHead, Response, ResponseHead
from proxyapp.testing import (
    InMemoryProxy,
    makeRequestHead,
    makeResponse,
    makeResponseHead,
)


class FilterFailed(Exception):
    """
    What the failing test filters raise.
    """


@implementer(IRequestFilter)
class RequestFilter:
    """
    A request filter that records its calls in C{log} and returns what
    C{answer(request)} returns.
    """

    def __init__(
        self,
        name: str,
        log: list[str],
        answer: Optional[Callable[[RequestHead], Any]] = None,
    ) -> None:
        self.name = name
        self.log = log
        self.answer = answer

    def filterRequest(self, request: RequestHead) -> Any:
        self.log.append(self.name)
        if self.answer is None:
            request.headers.add(b"X-Seen-By", self.name.encode("ascii"))
            return request
        return self.answer(request)


@implementer(IResponseFilter)
class ResponseFilter:
    """
    A response filter that records its calls in C{log} and returns what
    C{answer(request, response)} returns.
    """

    def __init__(
        self,
        name: str,
        log: list[str],
        answer: Optional[Callable[[RequestHead, ResponseHead], Any]] = None,
    ) -> None:
        self.name = name
        self.log = log
        self.answer = answer

    def filterResponse(self, request: RequestHead, response: ResponseHead) -> Any:
        self.log.append(self.name)
        if self.answer is None:
            response.headers.add(b"X-Seen-By", self.name.encode("ascii"))
            return response
        return self.answer(request, response)


@implementer(ITunnelFilter)
class TunnelFilter:
    """
    A tunnel filter returning what C{answer(request)} returns.
    """

    def __init__(self, answer: Callable[[RequestHead], Any]) -> None:
        self.answer = answer

    def filterTunnel(self, request: RequestHead) -> Any:
        return self.answer(request)


@implementer(IBodyTransform)
class Upper:
    """
    Upper-cases a body; with C{failAfter}, raises on that many-th chunk.
    """

    def __init__(
        self, failAfter: Optional[int] = None, failFinish: bool = False
    ) -> None:
        self.chunks = 0
        self.failAfter = failAfter
        self.failFinish = failFinish

    def transform(self, chunk: bytes) -> bytes:
        self.chunks += 1
        if self.failAfter is not None and self.chunks >= self.failAfter:
            raise FilterFailed("transform broke")
        return chunk.upper()

    def finish(self) -> bytes:
        if self.failFinish:
            raise FilterFailed("finish broke")
        return b"!"


@implementer(IBodyFilter)
class BodyFilter:
    """
    Offers the transform C{make()} returns.
    """

    def __init__(self, make: Callable[[], Any]) -> None:
        self.make = make

    def bodyTransform(self, request: RequestHead, response: ResponseHead) -> Any:
        return self.make()


def raiser(*args: object) -> Any:
    raise FilterFailed("boom")


def chainOf(
    *filters: tuple[str, object],
    onError: str = FAIL,
    reactor: Any = None,
    deadline: float = 5.0,
) -> FilterChain:
    """
    @return: a L{FilterChain} of C{(name, filter)} pairs.
    """
    return FilterChain(
        [EnabledFilter(name, f, onError) for name, f in filters], reactor, deadline
    )


def eventsNaming(events: list[LogEvent], name: str) -> list[str]:
    """
    @return: the formatted log events that carry filter name C{name}.
    """
    return [formatEvent(e) for e in events if e.get("name") == name]


def result(d: Deferred) -> Any:
    """
    @return: the result a fired Deferred holds.
    """
    box: list[Any] = []
    d.addBoth(box.append)
    assert box, "the Deferred has not fired"
    return box[0]


class InterfaceTests(SynchronousTestCase):
    """
    The filters used in these tests implement their interfaces, so the
    chain is tested with valid providers.
    """

    def test_verifyTestFilters(self) -> None:
        """
        Every test filter and transform passes C{verifyObject}.
        """
        self.assertTrue(verifyObject(IRequestFilter, RequestFilter("a", [])))
        self.assertTrue(verifyObject(IResponseFilter, ResponseFilter("a", [])))
        self.assertTrue(verifyObject(ITunnelFilter, TunnelFilter(lambda r: None)))
        self.assertTrue(verifyObject(IBodyFilter, BodyFilter(Upper)))
        self.assertTrue(verifyObject(IBodyTransform, Upper()))


class ActiveTests(SynchronousTestCase):
    """
    C{active} and its relatives let the protocol skip the chain entirely.
    """

    def test_emptyChainInactive(self) -> None:
        """
        With no filters the chain is inactive and has neither response nor
        body filters.
        """
        chain = FilterChain([])
        self.assertFalse(chain.active)
        self.assertFalse(chain.hasResponseFilters)
        self.assertFalse(chain.hasBodyFilters)
        self.assertEqual(chain.names(), [])

    def test_emptyChainPassesThrough(self) -> None:
        """
        An empty chain returns the very request and response it was given,
        synchronously, and allows tunnels.
        """
        chain = FilterChain([])
        request = makeRequestHead()
        response = makeResponseHead()
        self.assertIs(chain.filterRequest(request), request)
        self.assertIs(chain.filterResponse(request, response), response)
        self.assertIsNone(chain.filterTunnel(request))
        self.assertEqual(chain.bodyTransforms(request, response), [])

    def test_onlyResponseFilter(self) -> None:
        """
        A chain with only a response filter is active, has response filters
        and no body filters.
        """
        chain = chainOf(("r", ResponseFilter("r", [])))
        self.assertTrue(chain.active)
        self.assertTrue(chain.hasResponseFilters)
        self.assertFalse(chain.hasBodyFilters)

    def test_onlyBodyFilter(self) -> None:
        """
        A chain with only a body filter is active and has body filters.
        """
        chain = chainOf(("b", BodyFilter(Upper)))
        self.assertTrue(chain.active)
        self.assertFalse(chain.hasResponseFilters)
        self.assertTrue(chain.hasBodyFilters)

    def test_namesInOrder(self) -> None:
        """
        C{names} lists the enabled filters in run order, whatever they
        provide.
        """
        chain = chainOf(
            ("z", RequestFilter("z", [])),
            ("a", ResponseFilter("a", [])),
            ("m", BodyFilter(Upper)),
        )
        self.assertEqual(chain.names(), ["z", "a", "m"])


class OrderTests(SynchronousTestCase):
    """
    Filters run in the configured order and each sees what the one before
    returned.
    """

    def test_requestOrder(self) -> None:
        """
        Request filters run in order, each seeing the previous one's
        changes.
        """
        calls: list[str] = []
        chain = chainOf(
            ("b", RequestFilter("b", calls)),
            ("a", RequestFilter("a", calls)),
            ("c", RequestFilter("c", calls)),
        )
        request = chain.filterRequest(makeRequestHead())
        self.assertEqual(calls, ["b", "a", "c"])
        self.assertEqual(request.headers.getAll(b"x-seen-by"), [b"b", b"a", b"c"])

    def test_responseOrder(self) -> None:
        """
        Response filters run in order on the response head.
        """
        calls: list[str] = []
        chain = chainOf(
            ("2", ResponseFilter("2", calls)), ("1", ResponseFilter("1", calls))
        )
        response = chain.filterResponse(makeRequestHead(), makeResponseHead())
        self.assertEqual(calls, ["2", "1"])
        self.assertEqual(response.headers.getAll(b"x-seen-by"), [b"2", b"1"])

    def test_replacementHeadPassedOn(self) -> None:
        """
        A filter may return a new head; the next filter sees that one and
        the chain returns it.
        """
        replacement = makeRequestHead(url=b"http://other.example/")
        seen: list[RequestHead] = []

        def record(request: RequestHead) -> RequestHead:
            seen.append(request)
            return request

        chain = chainOf(
            ("swap", RequestFilter("swap", [], lambda r: replacement)),
            ("see", RequestFilter("see", [], record)),
        )
        self.assertIs(chain.filterRequest(makeRequestHead()), replacement)
        self.assertEqual(seen, [replacement])

    def test_kindsAreSeparate(self) -> None:
        """
        A request-only filter is not called for responses, nor a
        response-only filter for requests.
        """
        calls: list[str] = []
        chain = chainOf(
            ("req", RequestFilter("req", calls)),
            ("resp", ResponseFilter("resp", calls)),
        )
        request = chain.filterRequest(makeRequestHead())
        self.assertEqual(calls, ["req"])
        chain.filterResponse(request, makeResponseHead())
        self.assertEqual(calls, ["req", "resp"])


class ShortCircuitTests(SynchronousTestCase):
    """
    A L{Response} from a filter answers the exchange and stops the chain.
    """

    def test_requestShortCircuit(self) -> None:
        """
        A request filter's Response is returned, marked with its decider,
        and later filters do not run.
        """
        calls: list[str] = []
        answer = makeResponse(403, b"no")
        chain = chainOf(
            ("first", RequestFilter("first", calls)),
            ("deny", RequestFilter("deny", calls, lambda r: answer)),
            ("never", RequestFilter("never", calls)),
        )
        self.assertIs(chain.filterRequest(makeRequestHead()), answer)
        self.assertEqual(answer.decider, "deny")
        self.assertEqual(calls, ["first", "deny"])

    def test_responseShortCircuit(self) -> None:
        """
        A response filter's Response replaces the upstream's and stops the
        chain.
        """
        calls: list[str] = []
        answer = makeResponse(451, b"gone")
        chain = chainOf(
            ("replace", ResponseFilter("replace", calls, lambda q, r: answer)),
            ("never", ResponseFilter("never", calls)),
        )
        self.assertIs(
            chain.filterResponse(makeRequestHead(), makeResponseHead()), answer
        )
        self.assertEqual(answer.decider, "replace")
        self.assertEqual(calls, ["replace"])

    def test_noneMeansUnchanged(self) -> None:
        """
        A filter returning C{None} leaves the head as it was.
        """
        request = makeRequestHead()
        chain = chainOf(("quiet", RequestFilter("quiet", [], lambda r: None)))
        self.assertIs(chain.filterRequest(request), request)


class DeferredTests(SynchronousTestCase):
    """
    A filter may answer with a Deferred; the chain then answers with one
    and continues where it left off.
    """

    def test_deferredRequest(self) -> None:
        """
        The chain waits for a filter's Deferred before running the next
        filter.
        """
        calls: list[str] = []
        pending: Deferred[RequestHead] = Deferred()
        clock = Clock()
        chain = chainOf(
            ("slow", RequestFilter("slow", calls, lambda r: pending)),
            ("next", RequestFilter("next", calls)),
            reactor=clock,
        )
        request = makeRequestHead()
        d = chain.filterRequest(request)
        self.assertIsInstance(d, Deferred)
        self.assertEqual(calls, ["slow"])
        self.assertNoResult(d)
        clock.advance(1)
        pending.callback(request)
        self.assertEqual(calls, ["slow", "next"])
        self.assertIs(self.successResultOf(d), request)
        self.assertEqual(request.headers.getAll(b"x-seen-by"), [b"next"])
        # The deadline's timer was cancelled when the answer came.
        self.assertEqual(clock.getDelayedCalls(), [])

    def test_deferredResponseShortCircuit(self) -> None:
        """
        A Deferred firing with a Response short-circuits like a synchronous
        one, decider included.
        """
        calls: list[str] = []
        answer = makeResponse(403)
        chain = chainOf(
            ("async", RequestFilter("async", calls, lambda r: succeed(answer))),
            ("never", RequestFilter("never", calls)),
            reactor=Clock(),
        )
        self.assertIs(
            self.successResultOf(chain.filterRequest(makeRequestHead())), answer
        )
        self.assertEqual(answer.decider, "async")
        self.assertEqual(calls, ["async"])

    def test_deferredNoneMeansUnchanged(self) -> None:
        """
        A Deferred firing with C{None} leaves the head as it was.
        """
        request = makeRequestHead()
        chain = chainOf(
            ("async", RequestFilter("async", [], lambda r: succeed(None))),
            reactor=Clock(),
        )
        self.assertIs(self.successResultOf(chain.filterRequest(request)), request)

    def test_deferredResponseFilter(self) -> None:
        """
        Response filters may answer with Deferreds too.
        """
        calls: list[str] = []
        chain = chainOf(
            ("a", ResponseFilter("a", calls, lambda q, r: succeed(r))),
            ("b", ResponseFilter("b", calls)),
            reactor=Clock(),
        )
        response = makeResponseHead()
        self.assertIs(
            self.successResultOf(chain.filterResponse(makeRequestHead(), response)),
            response,
        )
        self.assertEqual(calls, ["a", "b"])

    def test_deadlineMissed(self) -> None:
        """
        A request filter's Deferred that misses the deadline is cancelled
        and the request gets 500, logged with the filter's name.
        """
        cancelled: list[bool] = []
        pending: Deferred[Any] = Deferred(lambda d: cancelled.append(True))
        clock = Clock()
        calls: list[str] = []
        chain = chainOf(
            ("sleepy", RequestFilter("sleepy", calls, lambda r: pending)),
            ("never", RequestFilter("never", calls)),
            reactor=clock,
            deadline=2.0,
        )
        with capturedLogs() as events:
            d = chain.filterRequest(makeRequestHead(url=b"http://example.com/x"))
            clock.advance(1.9)
            self.assertNoResult(d)
            clock.advance(0.2)
            response = self.successResultOf(d)
        self.assertEqual(cancelled, [True])
        self.assertIsInstance(response, Response)
        self.assertEqual(response.head.status, 500)
        self.assertEqual(response.decider, "sleepy")
        self.assertEqual(calls, ["sleepy"])
        [message] = eventsNaming(list(events), "sleepy")
        self.assertIn("sleepy", message)
        self.assertIn("deadline", message)
        self.assertIn("http://example.com/x", message)

    def test_responseDeadlineMissed(self) -> None:
        """
        A response filter missing the deadline gives 502.
        """
        clock = Clock()
        chain = chainOf(
            ("sleepy", ResponseFilter("sleepy", [], lambda q, r: Deferred())),
            reactor=clock,
            deadline=1.0,
        )
        d = chain.filterResponse(makeRequestHead(), makeResponseHead())
        clock.advance(1.0)
        self.assertEqual(self.successResultOf(d).head.status, 502)

    def test_deadlineMissedPass(self) -> None:
        """
        With C{on_error = "pass"} a filter that misses its deadline is
        skipped and the next filter runs on the unchanged head.
        """
        clock = Clock()
        calls: list[str] = []
        request = makeRequestHead()
        chain = FilterChain(
            [
                EnabledFilter(
                    "sleepy", RequestFilter("sleepy", calls, lambda r: Deferred()), PASS
                ),
                EnabledFilter("next", RequestFilter("next", calls)),
            ],
            clock,
            3.0,
        )
        with capturedLogs() as events:
            d = chain.filterRequest(request)
            clock.advance(3.0)
        self.assertIs(self.successResultOf(d), request)
        self.assertEqual(calls, ["sleepy", "next"])
        self.assertTrue(eventsNaming(list(events), "sleepy"))

    def test_failedDeferred(self) -> None:
        """
        A filter's Deferred that fails gives 500, logged with the filter's
        name.
        """
        chain = chainOf(
            ("sad", RequestFilter("sad", [], lambda r: fail(FilterFailed("nope")))),
            reactor=Clock(),
        )
        with capturedLogs() as events:
            response = self.successResultOf(chain.filterRequest(makeRequestHead()))
        self.assertEqual(response.head.status, 500)
        self.assertEqual(response.decider, "sad")
        [logged] = [e for e in events if e.get("name") == "sad"]
        self.assertEqual(logged["log_failure"].getErrorMessage(), "nope")
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 1)


class FailureTests(SynchronousTestCase):
    """
    A filter that raises never takes the proxy down: the exchange gets 500
    (request side) or 502 (response side), or the filter is skipped with
    C{on_error = "pass"}.
    """

    def test_requestFilterRaises(self) -> None:
        """
        A raising request filter gives a 500 Response decided by it, and a
        log event naming it, the client and the target.
        """
        calls: list[str] = []
        chain = chainOf(
            ("broken", RequestFilter("broken", calls, raiser)),
            ("never", RequestFilter("never", calls)),
        )
        with capturedLogs() as events:
            response = chain.filterRequest(
                makeRequestHead(url=b"http://example.com/p", client=("192.0.2.7", 4444))
            )
        self.assertIsInstance(response, Response)
        self.assertEqual(response.head.status, 500)
        self.assertEqual(response.decider, "broken")
        self.assertIn(b"broken", response.body)
        self.assertEqual(calls, ["broken"])
        [message] = eventsNaming(list(events), "broken")
        self.assertIn("filter broken failed", message)
        self.assertIn("192.0.2.7:4444", message)
        self.assertIn("http://example.com/p", message)
        [logged] = [e for e in events if e.get("name") == "broken"]
        self.assertTrue(logged["log_failure"].check(FilterFailed))
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 1)

    def test_responseFilterRaises(self) -> None:
        """
        A raising response filter gives a 502 Response decided by it.
        """
        chain = chainOf(("broken", ResponseFilter("broken", [], raiser)))
        with capturedLogs() as events:
            response = chain.filterResponse(makeRequestHead(), makeResponseHead())
        self.assertIsInstance(response, Response)
        self.assertEqual(response.head.status, 502)
        self.assertEqual(response.decider, "broken")
        self.assertTrue(eventsNaming(list(events), "broken"))
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 1)

    def test_passFailsOpen(self) -> None:
        """
        With C{on_error = "pass"} a raising filter is skipped: the next
        filter runs and the head goes on.
        """
        calls: list[str] = []
        request = makeRequestHead()
        chain = FilterChain(
            [
                EnabledFilter("broken", RequestFilter("broken", calls, raiser), PASS),
                EnabledFilter("next", RequestFilter("next", calls)),
            ]
        )
        with capturedLogs() as events:
            self.assertIs(chain.filterRequest(request), request)
        self.assertEqual(calls, ["broken", "next"])
        self.assertEqual(request.headers.getAll(b"x-seen-by"), [b"next"])
        self.assertTrue(eventsNaming(list(events), "broken"))
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 1)

    def test_passFailsOpenResponse(self) -> None:
        """
        On the response side C{on_error = "pass"} sends the upstream's head
        on.
        """
        response = makeResponseHead()
        chain = chainOf(("broken", ResponseFilter("broken", [], raiser)), onError=PASS)
        self.assertIs(chain.filterResponse(makeRequestHead(), response), response)
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 1)

    def test_chainUsableAfterFailure(self) -> None:
        """
        A failure affects only its own exchange: the next call runs the
        chain again from the start.
        """
        answers = [raiser, lambda r: r]

        def flaky(request: RequestHead) -> Any:
            return answers.pop(0)(request)

        chain = chainOf(("flaky", RequestFilter("flaky", [], flaky)))
        self.assertEqual(chain.filterRequest(makeRequestHead()).head.status, 500)
        request = makeRequestHead()
        self.assertIs(chain.filterRequest(request), request)
        self.flushLoggedErrors(FilterFailed)

    def test_wrongTypeIsFailure(self) -> None:
        """
        A filter answering with something that is neither the kind of head
        it was given, a L{Response} nor C{None} has failed (500 on
        requests, 502 on responses), at once or through a L{Deferred}; it
        used to raise in the protocol (no answer, a dropped connection) or
        leave the exchange waiting for good.
        """
        chain = chainOf(("sloppy", RequestFilter("sloppy", [], lambda r: "pass")))
        with capturedLogs():
            response = chain.filterRequest(makeRequestHead())
        self.assertEqual((response.head.status, response.decider), (500, "sloppy"))
        self.assertIn(b"returned str, not RequestHead", response.body)
        later: Deferred[Any] = Deferred()
        chain = chainOf(("sloppy", RequestFilter("sloppy", [], lambda r: later)))
        result = chain.filterRequest(makeRequestHead())
        with capturedLogs():
            later.callback({"status": 403})
        self.assertEqual(self.successResultOf(result).head.status, 500)
        chain = chainOf(("sloppy", ResponseFilter("sloppy", [], lambda r, h: 403)))
        with capturedLogs():
            response = chain.filterResponse(makeRequestHead(), makeResponseHead())
        self.assertEqual(response.head.status, 502)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 3)


class TunnelTests(SynchronousTestCase):
    """
    Tunnel filters allow (C{None}) or refuse (a L{Response}) a CONNECT.
    """

    def connect(self) -> RequestHead:
        return makeRequestHead(method=b"CONNECT", url=b"example.com:443")

    def test_allow(self) -> None:
        """
        Filters that all return C{None} allow the tunnel.
        """
        seen: list[tuple[Optional[str], int]] = []

        def allow(request: RequestHead) -> None:
            seen.append((request.host, request.port))

        chain = chainOf(("one", TunnelFilter(allow)), ("two", TunnelFilter(allow)))
        self.assertIsNone(chain.filterTunnel(self.connect()))
        self.assertEqual(seen, [("example.com", 443), ("example.com", 443)])

    def test_refuse(self) -> None:
        """
        A Response refuses the tunnel; it is marked with its decider and
        later filters do not run.
        """
        refusal = makeResponse(403)
        later: list[bool] = []
        chain = chainOf(
            ("deny", TunnelFilter(lambda r: refusal)),
            ("later", TunnelFilter(lambda r: later.append(True))),
        )
        self.assertIs(chain.filterTunnel(self.connect()), refusal)
        self.assertEqual(refusal.decider, "deny")
        self.assertEqual(later, [])

    def test_deferredAllow(self) -> None:
        """
        A Deferred firing with C{None} allows the tunnel (the chain's
        Deferred fires with C{None}).
        """
        chain = chainOf(
            ("async", TunnelFilter(lambda r: succeed(None))), reactor=Clock()
        )
        d = chain.filterTunnel(self.connect())
        self.assertIsInstance(d, Deferred)
        self.assertIsNone(self.successResultOf(d))

    def test_deferredRefuse(self) -> None:
        """
        A Deferred firing with a Response refuses the tunnel.
        """
        refusal = makeResponse(403)
        chain = chainOf(
            ("async", TunnelFilter(lambda r: succeed(refusal))), reactor=Clock()
        )
        self.assertIs(self.successResultOf(chain.filterTunnel(self.connect())), refusal)

    def test_raises(self) -> None:
        """
        A raising tunnel filter refuses with 500, logged with its name.
        """
        chain = chainOf(("broken", TunnelFilter(raiser)))
        with capturedLogs() as events:
            response = chain.filterTunnel(self.connect())
        self.assertEqual(response.head.status, 500)
        self.assertEqual(response.decider, "broken")
        self.assertTrue(eventsNaming(list(events), "broken"))
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 1)

    def test_raisesPass(self) -> None:
        """
        With C{on_error = "pass"} a raising tunnel filter allows the
        tunnel.
        """
        chain = chainOf(("broken", TunnelFilter(raiser)), onError=PASS)
        self.assertIsNone(chain.filterTunnel(self.connect()))
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 1)

    def test_newHeadIsFailure(self) -> None:
        """
        A tunnel filter can only allow or refuse: a new L{RequestHead}
        (which used to be ignored, the tunnel opening as asked) or anything
        else is a failure of that filter, at once or through a Deferred,
        and the error page says so.
        """
        elsewhere = makeRequestHead(method=b"CONNECT", url=b"other.example:443")
        for answer in (elsewhere, succeed(elsewhere), True):
            chain = chainOf(
                ("redirecting", TunnelFilter(lambda r: answer)), reactor=Clock()
            )
            with capturedLogs():
                result = chain.filterTunnel(self.connect())
            if isinstance(result, Deferred):
                result = self.successResultOf(result)
            self.assertEqual(
                (result.head.status, result.decider), (500, "redirecting"), answer
            )
            self.assertIn(b"not Response or None", result.body)
        self.assertEqual(len(self.flushLoggedErrors(TypeError)), 3)
        # The request itself, returned as a request filter would, allows.
        chain = chainOf(("mirrored", TunnelFilter(lambda r: r)))
        self.assertIsNone(chain.filterTunnel(self.connect()))

    def test_deadlineMissed(self) -> None:
        """
        A tunnel filter missing its deadline refuses with 500.
        """
        clock = Clock()
        chain = chainOf(
            ("sleepy", TunnelFilter(lambda r: Deferred())), reactor=clock, deadline=0.5
        )
        d = chain.filterTunnel(self.connect())
        clock.advance(0.5)
        self.assertEqual(self.successResultOf(d).head.status, 500)

    def test_requestFiltersNotConsulted(self) -> None:
        """
        filterTunnel runs tunnel filters only, not request filters.
        """
        calls: list[str] = []
        chain = chainOf(("req", RequestFilter("req", calls)))
        self.assertIsNone(chain.filterTunnel(self.connect()))
        self.assertEqual(calls, [])


class BodyTransformTests(SynchronousTestCase):
    """
    Body transforms are guarded: a raising one is logged with its filter's
    name, and then the response is cut short (C{on_error = "fail"}, the
    default) or the rest of the body passes through untouched
    (C{on_error = "pass"}).
    """

    def test_transforms(self) -> None:
        """
        C{bodyTransforms} returns one callable per offering filter, in
        order; C{None} offers are left out.
        """
        chain = chainOf(
            ("up", BodyFilter(Upper)),
            ("none", BodyFilter(lambda: None)),
            ("up2", BodyFilter(Upper)),
        )
        transforms = chain.bodyTransforms(makeRequestHead(), makeResponseHead())
        self.assertEqual([t.name for t in transforms], ["up", "up2"])
        self.assertEqual(transforms[0](b"abc"), b"ABC")
        self.assertEqual(transforms[0].finish(), b"!")

    def test_transformRaises(self) -> None:
        """
        A transform that raises mid-body is logged with its name and the
        protocol is told to cut the response short: passing the rest
        untouched would send half a transformed body as if it were whole
        (a redacting filter would leak what it was to remove).
        """
        chain = chainOf(("fragile", BodyFilter(lambda: Upper(failAfter=2))))
        [transform] = chain.bodyTransforms(makeRequestHead(), makeResponseHead())
        with capturedLogs() as events:
            self.assertEqual(transform(b"one"), b"ONE")
            failed = self.assertRaises(TransformFailed, transform, b"two")
        self.assertIn("fragile", failed.reason)
        # The exception's type, not its message, which may hold anything.
        self.assertIn("failed (FilterFailed)", failed.reason)
        self.assertNotIn("transform broke", failed.reason)
        self.assertEqual(len(eventsNaming(list(events), "fragile")), 1)
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 1)

    def test_transformRaisesPass(self) -> None:
        """
        With C{on_error = "pass"}, a transform that raises mid-body is
        logged once with its name and then passes chunks through unchanged.
        """
        chain = chainOf(
            ("fragile", BodyFilter(lambda: Upper(failAfter=2))), onError=PASS
        )
        [transform] = chain.bodyTransforms(makeRequestHead(), makeResponseHead())
        with capturedLogs() as events:
            out = [transform(b"one"), transform(b"two"), transform(b"three")]
            tail = transform.finish()
        self.assertEqual(out, [b"ONE", b"two", b"three"])
        self.assertEqual(tail, b"")
        self.assertEqual(len(eventsNaming(list(events), "fragile")), 1)
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 1)

    def test_finishRaises(self) -> None:
        """
        A transform whose C{finish} raises cuts the response short, or,
        with C{on_error = "pass"}, contributes nothing more.
        """
        chain = chainOf(("fragile", BodyFilter(lambda: Upper(failFinish=True))))
        [transform] = chain.bodyTransforms(makeRequestHead(), makeResponseHead())
        self.assertEqual(transform(b"x"), b"X")
        self.assertRaises(TransformFailed, transform.finish)
        chain = chainOf(
            ("fragile", BodyFilter(lambda: Upper(failFinish=True))), onError=PASS
        )
        [transform] = chain.bodyTransforms(makeRequestHead(), makeResponseHead())
        self.assertEqual(transform(b"x"), b"X")
        self.assertEqual(transform.finish(), b"")
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 2)

    def test_cutResponse(self) -> None:
        """
        A transform that raises L{CutResponse} cuts the response short
        whatever its C{on_error}, logged as a warning with its reason (not
        as a failure with a traceback).
        """

        class Cutting:
            def transform(self, chunk: bytes) -> bytes:
                raise CutResponse("too big")

            def finish(self) -> bytes:
                return b""

        for onError in (FAIL, PASS):
            chain = chainOf(("cutter", BodyFilter(Cutting)), onError=onError)
            [transform] = chain.bodyTransforms(makeRequestHead(), makeResponseHead())
            with capturedLogs() as events:
                failed = self.assertRaises(TransformFailed, transform, b"x")
            self.assertEqual(failed.reason, "body filter cutter cut it short: too big")
            self.assertEqual(len(eventsNaming(list(events), "cutter")), 1)
        self.assertEqual(self.flushLoggedErrors(), [])

    def test_bodyTransformRaises(self) -> None:
        """
        A body filter whose C{bodyTransform} raises is logged with its name
        and answers 502 in place of the response (it used to be skipped
        whatever its C{on_error}, so a redacting filter failed open); with
        C{on_error = "pass"} it is skipped and the others still apply.
        """
        filters = (("broken", BodyFilter(lambda: raiser())), ("up", BodyFilter(Upper)))
        with capturedLogs() as events:
            answer = chainOf(*filters).bodyTransforms(
                makeRequestHead(), makeResponseHead()
            )
        self.assertIsInstance(answer, Response)
        self.assertEqual((answer.head.status, answer.decider), (502, "broken"))
        self.assertTrue(eventsNaming(list(events), "broken"))
        transforms = chainOf(*filters, onError=PASS).bodyTransforms(
            makeRequestHead(), makeResponseHead()
        )
        self.assertEqual([t.name for t in transforms], ["up"])
        self.assertEqual(len(self.flushLoggedErrors(FilterFailed)), 2)

    def test_bodyTransformRaisesEndToEnd(self) -> None:
        """
        Through a proxy, a body filter whose C{bodyTransform} raises gets
        the client a 502 and no upstream body.
        """
        proxy = InMemoryProxy(
            [EnabledFilter("broken", BodyFilter(lambda: raiser()))], origin
        )
        response = proxy.get("http://example.com/")
        self.assertEqual(response.status, 502)
        self.assertNotIn(b"abcdef", response.body)
        self.flushLoggedErrors(FilterFailed)


def origin(request: Any) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    return 200, [(b"Content-Type", b"text/plain")], b"abcdef" * 1000


class ChainInProxyTests(SynchronousTestCase):
    """
    The chain's answers as a client sees them through a real proxy
    protocol (in memory).
    """

    def test_requestFailureIs500(self) -> None:
        """
        A raising request filter answers 500 and the origin is not
        contacted.
        """
        proxy = InMemoryProxy(
            [EnabledFilter("broken", RequestFilter("broken", [], raiser))], origin
        )
        response = proxy.get("http://example.com/")
        self.assertEqual(response.status, 500)
        self.assertEqual(proxy.originRequests, [])
        self.flushLoggedErrors(FilterFailed)

    def test_responseFailureIs502(self) -> None:
        """
        A raising response filter answers 502 instead of the origin's
        response.
        """
        proxy = InMemoryProxy(
            [EnabledFilter("broken", ResponseFilter("broken", [], raiser))], origin
        )
        response = proxy.get("http://example.com/")
        self.assertEqual(response.status, 502)
        self.assertEqual(len(proxy.originRequests), 1)
        self.flushLoggedErrors(FilterFailed)

    def test_passFailsOpenEndToEnd(self) -> None:
        """
        With C{on_error = "pass"} the client gets the origin's response.
        """
        proxy = InMemoryProxy(
            [EnabledFilter("broken", ResponseFilter("broken", [], raiser), PASS)],
            origin,
        )
        response = proxy.get("http://example.com/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"abcdef" * 1000)
        self.flushLoggedErrors(FilterFailed)

    def test_deadlineEndToEnd(self) -> None:
        """
        A request filter that never answers gives the client 500 after the
        deadline (the in-memory reactor's clock runs the deadline).
        """
        proxy = InMemoryProxy(
            [
                EnabledFilter(
                    "sleepy", RequestFilter("sleepy", [], lambda r: Deferred())
                )
            ],
            origin,
        )
        response = proxy.get("http://example.com/")
        self.assertEqual(response.status, 500)
        self.assertIn(b"deadline", response.body)

    def test_bodyTransformFraming(self) -> None:
        """
        A transformed body is re-framed by the core: the origin's
        Content-Length is dropped and the body is sent chunked, complete
        with what C{finish} returned.
        """
        proxy = InMemoryProxy([EnabledFilter("up", BodyFilter(Upper))], origin)
        response = proxy.get("http://example.com/")
        self.assertEqual(response.status, 200)
        self.assertIsNone(response.headers.get(b"content-length"))
        self.assertEqual(response.headers.get(b"transfer-encoding"), b"chunked")
        self.assertEqual(response.body, b"ABCDEF" * 1000 + b"!")

    def test_brokenTransformEndToEnd(self) -> None:
        """
        With C{on_error = "pass"}, a transform that breaks mid-body does not
        break the response: the client still gets a complete, correctly
        framed body.  (With "fail", the default, the response is cut short:
        see C{tests.test_protocol.RequestFilterTests}.)
        """
        proxy = InMemoryProxy(
            [EnabledFilter("fragile", BodyFilter(lambda: Upper(failAfter=1)), PASS)],
            origin,
        )
        response = proxy.get("http://example.com/")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.body, b"abcdef" * 1000)
        self.flushLoggedErrors(FilterFailed)

    def test_tunnelRefusedEndToEnd(self) -> None:
        """
        A tunnel filter's refusal reaches the client and no upstream
        connection is made.
        """
        proxy = InMemoryProxy(
            [
                EnabledFilter(
                    "deny", TunnelFilter(lambda r: makeResponse(403, b"no tunnels"))
                )
            ],
            origin,
        )
        response = proxy.request(
            b"CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n"
        )
        self.assertEqual(response.status, 403)
        self.assertEqual(response.body, b"no tunnels")
        self.assertEqual(proxy.connections, [])

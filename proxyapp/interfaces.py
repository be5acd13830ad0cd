# -*- test-case-name: tests.test_chain -*-
"""
The contracts between the proxy and its filters.

A filter is a small object providing one or more of L{IRequestFilter},
L{IResponseFilter}, L{IBodyFilter} and L{ITunnelFilter}.  An
L{IFilterFactory} (also providing L{twisted.plugin.IPlugin}) builds filters
from their configuration table and is found by C{twisted.plugin} discovery
in the C{proxyapp.plugins} package.

Filters see message heads (L{proxyapp.message.RequestHead},
L{proxyapp.message.ResponseHead}) and may change them in place, replace
them, or answer with a L{proxyapp.message.Response}.  Bodies reach filters
only as a stream of chunks, through L{IBodyTransform}.  A filter never sees
a transport, so flow control and connection reuse stay the proxy's.

The proxy has framed each message before filters see it, and the body is
relayed as it was framed.  So after any filter that is not built in has
run: a message's framing fields (Content-Length, Transfer-Encoding) are
put back as the sender framed the body, and so is the client's HTTP
version on its request head (and, after response and body filters, its
method).  A request filter that changed the method to or from HEAD or
CONNECT gets the request answered 500, whatever it answered (the next hop
would read the body differently, or a tunnel would open that no tunnel
filter saw); a response or body filter that changed the status to or from
one without a body (1xx, 204, 304; for HEAD, whose answers never have
one, only to or from 1xx), or a 101's status at all, gets it answered
502.  C{Headers.add} and C{Headers.set} refuse names that are not
tokens and values with control characters (CR, LF, NUL and the like), and
after a filter that is not built in the proxy checks every field, the
reason phrase and the types it relies on (L{proxyapp.message.messageDefect};
a malformed message is answered 500 or 502), so a filter cannot add lines
to a head; the proxy frames a filter's own
L{proxyapp.message.Response} itself.  A filter that reroutes a request
either changes the head it was given (C{host}, C{port}, and the C{Host}
field to match) or returns a C{RequestHead} built anew with an
absolute-form target (C{http://host/path}).  A new head stands for the
client's request: it takes the client's version and address (and its user
and credentials, unless the filter set them) and the proxy's C{Via}; if
the filter set no C{host} on it, the proxy reads its scheme, host and port
from its target, as the parser does, and sets C{Host} to match, and a
target that is not an absolute URL is answered 500.  So is a target
(C{path}) holding a space or a control character, or a method that is not
a token, however set; and a request rerouted to the proxy's own address is
answered 508 (a request for the proxy's own status page is answered by the
proxy, not rerouted).

Import interfaces from this module only.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional, Union

from zope.interface import Attribute, Interface

if TYPE_CHECKING:
    from twisted.internet.defer import Deferred

    from proxyapp.message import RequestHead, Response, ResponseHead


class IRequestFilter(Interface):
    """
    Inspects a request head before anything is sent upstream.
    """

    def filterRequest(
        request: "RequestHead",
    ) -> "Union[RequestHead, Response, Deferred[Union[RequestHead, Response]]]":
        """
        Decide what happens to a request.

        The head's hop-by-hop fields are already removed, C{Host} is the
        target's authority and C{request.user} is the authenticated proxy
        user, if any.  C{request.clientAddress} is the client's
        C{(host, port)}.  C{request.host} is C{None} for a request addressed
        to the proxy itself (its status page): the proxy answers such a
        request itself once the filters pass it.

        @return: the head to forward (the same object, possibly modified in
            place, or a new one), a L{Response} to answer the client without
            contacting upstream, or a L{Deferred} firing with either.
            Raising, or a Deferred failing or missing the filter deadline,
            answers 500 unless the filter is configured C{on_error =
            "pass"}.
        """


class IResponseFilter(Interface):
    """
    Inspects a response head before it is sent to the client.
    """

    def filterResponse(
        request: "RequestHead", response: "ResponseHead"
    ) -> "Union[ResponseHead, Response, Deferred[Union[ResponseHead, Response]]]":
        """
        Decide what happens to a final (non-1xx) response, and to a
        C{101 Switching Protocols} accepting an upgrade (a L{Response}
        then refuses the upgrade: the client gets it and both connections
        close).

        @param request: the request as it was forwarded.
        @param response: the upstream's response head, hop-by-hop fields
            removed and the proxy's own C{Via} entry added.
        @return: the head to send (possibly modified), a L{Response} that
            replaces the upstream's response entirely (its body is then
            discarded), or a L{Deferred} firing with either.  Raising, or a
            Deferred failing or missing the deadline, answers 502 unless the
            filter is configured C{on_error = "pass"}.
        """


class IBodyTransform(Interface):
    """
    Transforms one response body as a stream of chunks.  Built per response
    by an L{IBodyFilter}; holds only as much state as it needs (a match
    that may straddle a chunk boundary, a decompressor), never the body.
    """

    def transform(chunk: bytes) -> bytes:
        """
        @param chunk: the next piece of the body as received (de-chunked).
        @return: the bytes to send in its place (possibly empty, while the
            transform holds back a partial match).
        @raise proxyapp.chain.CutResponse: to end the response: cut short
            (the client sees the body incomplete), or a 502 if nothing of
            it has reached the client yet.  Any other exception does the
            same unless the filter is configured C{on_error = "pass"},
            which lets the rest of the body through untouched.
        """

    def finish() -> bytes:
        """
        The body is complete.  Not called when the response ends any other
        way: cut short, replaced by a 502 (another body filter's
        C{bodyTransform} raised before the head went out), or its
        connection lost; a transform is dropped then, so it should hold
        nothing that needs releasing.

        @return: whatever the transform still holds.
        """


class IBodyFilter(Interface):
    """
    Offers to transform response bodies.

    The core, not the filter, keeps the framing right: when a transform is
    used, the response's Content-Length is dropped and the body is sent
    chunked (or delimited by closing the connection for HTTP/1.0 clients).
    """

    def bodyTransform(
        request: "RequestHead", response: "ResponseHead"
    ) -> "Optional[IBodyTransform]":
        """
        Decide whether to transform this response's body.

        Called after the response filters, with the head about to be sent;
        the filter may adjust it (e.g. drop Content-Encoding when it
        decodes).

        @return: a fresh L{IBodyTransform} for this body, or C{None} to leave
            it untouched.
        """


class ITunnelFilter(Interface):
    """
    Decides on CONNECT requests.
    """

    def filterTunnel(
        request: "RequestHead",
    ) -> "Union[None, Response, Deferred[Optional[Response]]]":
        """
        Decide whether a tunnel to C{request.host}, C{request.port} may open.

        @return: C{None} to allow it, a L{Response} (e.g. 403) to refuse it,
            or a L{Deferred} firing with either.
        """


class IFilterFactory(Interface):
    """
    Builds a filter from its C{[filter.NAME]} configuration table.

    Providers also provide L{twisted.plugin.IPlugin} and live in a module of
    the C{proxyapp.plugins} package, where discovery finds them.
    """

    name = Attribute("The name that enables the filter: C{[filters] enabled = [name]}.")
    description = Attribute("One line saying what the filter does.")

    def makeFilter(config: "dict[str, Any]") -> object:
        """
        Build a filter.

        @param config: the filter's C{[filter.NAME]} table (without the
            keys the proxy itself handles, such as C{on_error}); empty if
            the file has none.
        @return: an object providing at least one of L{IRequestFilter},
            L{IResponseFilter}, L{IBodyFilter}, L{ITunnelFilter}.
        @raise ValueError: with a message naming the bad key and what was
            expected; the proxy refuses to start (or to reload) with it.
        """

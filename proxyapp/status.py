# -*- test-case-name: tests.test_status -*-
"""
What the proxy answers itself: its status page (origin-form C{GET /}),
C{/status.json}, and TRACE/OPTIONS requests whose Max-Forwards reached 0.

Pure functions from a request and counters to a L{Response}; no I/O.
"""

from __future__ import annotations

import json
from html import escape
from typing import Any

from proxyapp import __version__
from proxyapp.message import (
    Headers,
    RequestHead,
    Response,
    errorResponse,
    simpleResponse,
)

ALLOWED_METHODS = b"GET, HEAD, POST, PUT, DELETE, CONNECT, OPTIONS, TRACE, PATCH"

# Fields a TRACE echo leaves out (RFC 9110 section 9.3.8: credentials).
_SENSITIVE = frozenset([b"authorization", b"proxy-authorization", b"cookie"])


class Stats:
    """
    Counters for the status page.  Plain attribute increments on the hot
    path; nothing is computed until someone asks.
    """

    def __init__(self, now: float) -> None:
        self.started = now
        self.clientConnections = 0
        self.upstreamConnections = 0
        self.requests = 0
        self.tunnels = 0
        self.bytesFromClients = 0
        self.bytesToClients = 0


def snapshot(factory: Any) -> dict[str, Any]:
    """
    @return: the status figures of a running L{proxyapp.protocol.ProxyFactory}.
    """
    stats = factory.stats
    now = factory.reactor.seconds()
    return {
        "name": "webproxy",
        "version": __version__,
        "uptime_seconds": round(now - stats.started, 3),
        "client_connections": stats.clientConnections,
        "upstream_connections": stats.upstreamConnections,
        "idle_upstream_connections": factory.pool.idleCount(),
        "requests": stats.requests,
        "tunnels": stats.tunnels,
        "bytes_from_clients": stats.bytesFromClients,
        "bytes_to_clients": stats.bytesToClients,
    }


def _formatUptime(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    days, hours = divmod(hours, 24)
    return (f"{days}d " if days else "") + f"{hours:02d}:{minutes:02d}:{secs:02d}"


def statusPage(figures: dict[str, Any]) -> bytes:
    """
    @return: the HTML status page for L{snapshot}'s figures.
    """
    rows = [
        ("Version", figures["version"]),
        ("Uptime", _formatUptime(figures["uptime_seconds"])),
        ("Open client connections", figures["client_connections"]),
        ("Open upstream connections", figures["upstream_connections"]),
        ("Idle pooled upstream connections", figures["idle_upstream_connections"]),
        ("Requests served", figures["requests"]),
        ("CONNECT tunnels", figures["tunnels"]),
        ("Bytes received from clients", figures["bytes_from_clients"]),
        ("Bytes sent to clients", figures["bytes_to_clients"]),
    ]
    body = "".join(
        f"<tr><th>{escape(k)}</th><td>{escape(str(v))}</td></tr>" for k, v in rows
    )
    page = (
        "<!DOCTYPE html>\n<html><head><title>webproxy</title>"
        "<style>body{font-family:sans-serif;margin:2em}th{text-align:left;padding-right:2em}</style>"
        f"</head><body><h1>webproxy {escape(figures['version'])}</h1>"
        "<p>This is an HTTP forward proxy. Configure it as your HTTP and HTTPS proxy; "
        "it does not serve web pages of its own.</p>"
        f"<table>{body}</table>"
        '<p><a href="/status.json">status.json</a></p></body></html>\n'
    )
    return page.encode("utf-8")


PAGES = frozenset([b"/", b"/status.json"])
"""
The paths of the proxy's own pages.
"""


def localResponse(request: RequestHead, factory: Any) -> Response:
    """
    Answer a request addressed to the proxy itself: an origin-form target,
    or an absolute-form one naming the proxy's own address and one of its
    L{PAGES}.
    """
    path = request.path.split(b"?", 1)[0]
    if request.method not in (b"GET", b"HEAD"):
        if request.method == b"OPTIONS":
            return _optionsResponse()
        response = errorResponse(
            405, "The proxy's own pages only answer GET and HEAD.", request.url()
        )
        response.head.headers.add(b"Allow", b"GET, HEAD")
        return response
    if path == b"/":
        response = simpleResponse(
            200,
            statusPage(snapshot(factory)),
            b"text/html; charset=utf-8",
            "status page",
        )
    elif path == b"/status.json":
        body = json.dumps(snapshot(factory), sort_keys=True).encode("ascii") + b"\n"
        response = simpleResponse(200, body, b"application/json", "status")
    else:
        return errorResponse(
            404,
            "This is a forward proxy: send absolute URLs (http://host/path), or GET / for its status page.",
            request.url(),
        )
    response.head.headers.add(b"Cache-Control", b"no-store")
    return response


def _optionsResponse() -> Response:
    response = simpleResponse(200, b"", reason="OPTIONS")
    response.head.headers = Headers([(b"Allow", ALLOWED_METHODS)])
    return response


def maxForwardsResponse(request: RequestHead) -> Response:
    """
    Answer TRACE or OPTIONS whose Max-Forwards is 0 (RFC 9110 section
    7.6.2): the proxy is the final recipient.
    """
    if request.method == b"OPTIONS":
        return _optionsResponse()
    echo = RequestHead(request.method, request.target, request.version)
    for name, value in request.headers:
        if name.lower() not in _SENSITIVE:
            echo.headers.add(name, value)
    body = (
        request.method
        + b" "
        + request.target
        + b" "
        + request.version
        + b"\r\n"
        + echo.headers.serialize()
        + b"\r\n"
    )
    return simpleResponse(200, body, b"message/http", "TRACE")

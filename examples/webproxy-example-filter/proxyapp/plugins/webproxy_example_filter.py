"""
webproxy-example-filter: a complete third-party webproxy filter.

It greets every response with an C{X-Example-Filter} field and refuses
requests for configured path prefixes with 403.  Enable it with::

    [filters]
    enabled = ["example"]

    [filter.example]
    greeting = "hello"
    blocked_paths = ["/private"]

This module is installed into webproxy's plugin package
(C{site-packages/proxyapp/plugins/}), where C{twisted.plugin.getPlugins}
finds the L{factory} object at the bottom.
"""

from __future__ import annotations

from typing import Any, Union

from twisted.plugin import IPlugin
from zope.interface import implementer

from proxyapp.interfaces import IFilterFactory, IRequestFilter, IResponseFilter
from proxyapp.message import RequestHead, Response, ResponseHead, errorResponse


@implementer(IRequestFilter, IResponseFilter)
class ExampleFilter:
    """
    Refuses blocked paths, greets every other response.

    @ivar greeting: the value of the C{X-Example-Filter} response field.
    @ivar blockedPaths: path prefixes refused with 403.
    """

    def __init__(self, greeting: bytes, blockedPaths: list[bytes]) -> None:
        self.greeting = greeting
        self.blockedPaths = tuple(blockedPaths)

    def filterRequest(self, request: RequestHead) -> Union[RequestHead, Response]:
        # request.path is the origin-form target: path and query, as bytes.
        if self.blockedPaths and request.path.startswith(self.blockedPaths):
            response = errorResponse(403, "This path is blocked by the example filter.", request.url())
            response.reason = "blocked path"
            return response
        return request

    def filterResponse(self, request: RequestHead, response: ResponseHead) -> ResponseHead:
        response.headers.set(b"X-Example-Filter", self.greeting)
        return response


def makeExampleFilter(config: dict[str, Any]) -> ExampleFilter:
    """
    Build an L{ExampleFilter} from its C{[filter.example]} table.

    @raise ValueError: naming the bad key and what was expected.
    """
    unknown = sorted(set(config) - {"greeting", "blocked_paths"})
    if unknown:
        raise ValueError(f"unknown key {unknown[0]!r}; expected greeting or blocked_paths")
    greeting = config.get("greeting", "hello")
    if not isinstance(greeting, str) or not greeting.isprintable() or not greeting.isascii():
        raise ValueError(f"greeting: expected printable ASCII text, got {greeting!r}")
    paths = config.get("blocked_paths", [])
    if not isinstance(paths, list) or not all(isinstance(p, str) and p.startswith("/") for p in paths):
        raise ValueError(f"blocked_paths: expected a list of paths starting with /, got {paths!r}")
    return ExampleFilter(greeting.encode("ascii"), [p.encode("utf-8") for p in paths])


@implementer(IPlugin, IFilterFactory)
class ExampleFilterFactory:
    """
    Tells webproxy the filter's name and description, and builds it.
    """

    name = "example"
    description = "Adds X-Example-Filter to responses; 403 for blocked_paths."

    def makeFilter(self, config: dict[str, Any]) -> ExampleFilter:
        return makeExampleFilter(config)


# getPlugins finds module-level objects that provide the interface.
factory = ExampleFilterFactory()

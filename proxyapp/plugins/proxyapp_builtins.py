"""
The built-in filter factories, discovered like any third-party plugin.

Each factory imports its implementation only when a filter is built, so
discovery stays cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

from twisted.plugin import IPlugin
from zope.interface import implementer

from proxyapp.interfaces import IFilterFactory


@implementer(IPlugin, IFilterFactory)
class _BuiltinFactory:
    """
    A factory whose C{makeFilter} lives in C{proxyapp.filters.<module>}.
    """

    def __init__(self, name: str, module: str, description: str) -> None:
        self.name = name
        self.module = module
        self.description = description

    def makeFilter(self, config: dict[str, Any]) -> object:
        module = importlib.import_module(f"proxyapp.filters.{self.module}")
        return module.makeFilter(config)

    def __repr__(self) -> str:
        return f"<built-in filter factory {self.name!r}>"


access = _BuiltinFactory(
    "access",
    "access",
    "Client allow list, blocked domains (HTTP and CONNECT): 403 for the rest.",
)
auth = _BuiltinFactory(
    "auth", "auth", "Basic proxy authentication against an htpasswd file (407)."
)
privacy = _BuiltinFactory(
    "privacy",
    "privacy",
    "Via, X-Forwarded-For/Forwarded and identifying request fields.",
)
headers = _BuiltinFactory(
    "headers", "headers", "Add, set or remove request and response fields, per host."
)
rewrite = _BuiltinFactory(
    "rewrite",
    "rewrite",
    "Literal or regex replacement in text response bodies, streaming.",
)

# -*- test-case-name: tests.test_discovery -*-
"""
Finding filter factories with C{twisted.plugin}, and building the enabled
filters from their configuration.

Filter plugins live in our own plugin package, C{proxyapp.plugins} (Twisted's
"alternate plugin packages"): a third-party distribution ships a module into
C{proxyapp/plugins/} and C{pip install} is all it takes to make it
discoverable.  Discovery never enables anything; only C{[filters] enabled}
or C{--filter NAME} does.
"""

from __future__ import annotations

import importlib
import sys
from types import ModuleType
from typing import Any, Iterable, Optional

from twisted.plugin import IPlugin, getPlugins
from twisted.python.modules import getModule
from zope.interface.exceptions import Invalid
from zope.interface.verify import verifyObject

from proxyapp.chain import FAIL, PASS, EnabledFilter
from proxyapp.interfaces import (
    IBodyFilter,
    IFilterFactory,
    IRequestFilter,
    IResponseFilter,
    ITunnelFilter,
)

FILTER_INTERFACES = (IRequestFilter, IResponseFilter, IBodyFilter, ITunnelFilter)

# The module of the built-in filters' factories.
_BUILTINS = "proxyapp.plugins.proxyapp_builtins"

# Keys of a [filter.NAME] table that the proxy handles itself.
PROXY_KEYS = frozenset(["on_error"])


class FilterError(ValueError):
    """
    A filter cannot be enabled: unknown name, broken plugin, bad
    configuration.  The message names the filter and what is wrong.
    """


class Discovered:
    """
    What discovery found.

    @ivar factories: name to factory, for every valid factory.
    @ivar origins: name to the module that provided it.
    @ivar problems: C{(module name, message)} for each broken plugin module
        or invalid factory, already reported and skipped.
    @ivar duplicates: name to the other modules that provide a factory of
        that name too (the first found is in C{origins}); such a name
        cannot be enabled.
    """

    def __init__(self) -> None:
        self.factories: dict[str, Any] = {}
        self.origins: dict[str, str] = {}
        self.problems: list[tuple[str, str]] = []
        self.duplicates: dict[str, list[str]] = {}


def _defaultPackage() -> ModuleType:
    import proxyapp.plugins

    return proxyapp.plugins


def _originOf(factory: object, modules: Iterable[str]) -> str:
    for name in modules:
        module = sys.modules.get(name)
        if module is not None and any(
            value is factory for value in vars(module).values()
        ):
            return name
    return type(factory).__module__


def findFilterFactories(package: Optional[ModuleType] = None) -> Discovered:
    """
    Discover every filter factory in C{package} (default
    C{proxyapp.plugins}), check each with C{verifyObject}, and report broken
    plugin modules by name instead of failing.
    """
    if package is None:
        package = _defaultPackage()
    found = Discovered()
    moduleNames = [m.name for m in getModule(package.__name__).iterModules()]
    for factory in getPlugins(IFilterFactory, package):
        origin = _originOf(factory, moduleNames)
        try:
            verifyObject(IPlugin, factory)
            verifyObject(IFilterFactory, factory)
            name = factory.name
            if not isinstance(name, str) or not name:
                raise Invalid("its name is not a non-empty string")
        except Invalid as e:
            found.problems.append((origin, f"invalid filter factory: {e}"))
            continue
        if name in found.factories:
            winner = found.origins[name]
            if origin == _BUILTINS:
                # A built-in keeps its name, whichever module was found first.
                for other in [winner, *found.duplicates.pop(name, [])]:
                    found.problems.append(
                        (
                            other,
                            f"filter name {name!r} is already provided by {origin}; skipped",
                        )
                    )
                found.factories[name] = factory
                found.origins[name] = origin
                continue
            if winner != _BUILTINS:
                # Two other modules leave the name ambiguous.
                found.duplicates.setdefault(name, []).append(origin)
            found.problems.append(
                (
                    origin,
                    f"filter name {name!r} is already provided by {found.origins[name]}; skipped",
                )
            )
            continue
        found.factories[name] = factory
        found.origins[name] = origin
    for moduleName in moduleNames:
        if moduleName in sys.modules:
            continue
        # getPlugins could not import it (it logged the traceback); say
        # which module it was and why, in one line.
        try:
            importlib.import_module(moduleName)
        except BaseException as e:
            found.problems.append(
                (moduleName, f"plugin module failed to import: {type(e).__name__}: {e}")
            )
    return found


def buildFilter(
    factory: Any,
    name: str,
    table: dict[str, Any],
    sections: Optional[dict[str, str]] = None,
) -> EnabledFilter:
    """
    Build one enabled filter from its C{[filter.NAME]} table and check that
    it provides what it claims.

    @param sections: for keys of C{table} that come from another section
        of the configuration file (the built-in C{access} and C{auth}
        filters' C{[access]} and C{[auth]}), that section, so that an error
        about one names the place the user set it.
    @raise FilterError: naming the filter and the problem.
    """
    table = dict(table)
    onError = table.pop("on_error", FAIL)
    if onError not in (FAIL, PASS):
        raise FilterError(
            f'[filter.{name}] on_error: expected "fail" or "pass", got {onError!r}'
        )
    try:
        built = factory.makeFilter(table)
    except KeyboardInterrupt:
        raise
    except (ValueError, TypeError, KeyError) as e:
        message = _oneLine(str(e))
        # Factories name the key first ("key: what was expected"), some
        # after their own name, which the section already gives.
        if message.startswith(name + ": "):
            message = message[len(name) + 2 :]
        section = (sections or {}).get(message.split(":", 1)[0])
        raise FilterError(f"[{section or 'filter.' + name}] {message}")
    except BaseException as e:
        # A crashing factory (even one calling sys.exit) is the plugin's
        # bug, not the user's; still one line, naming the filter.
        raise FilterError(
            f"filter {name!r}: its factory failed: {type(e).__name__}: {_oneLine(str(e))}"
        )
    provided = [i for i in FILTER_INTERFACES if i.providedBy(built)]
    if not provided:
        raise FilterError(
            f"filter {name!r}: the factory built {built!r}, which provides no filter interface"
        )
    for interface in provided:
        try:
            verifyObject(interface, built)
        except Invalid as e:
            raise FilterError(
                f"filter {name!r} does not implement {interface.__name__} correctly: {e}"
            )
    return EnabledFilter(name, built, onError)


def buildFilters(
    enabled: list[str],
    tables: dict[str, dict[str, Any]],
    discovered: Optional[Discovered] = None,
) -> list[EnabledFilter]:
    """
    Build the enabled filters, in order.

    @raise FilterError: for an unknown or broken filter, naming it.
    """
    if discovered is None:
        discovered = findFilterFactories()
    filters = []
    seen = set()
    for name in enabled:
        if name in seen:
            raise FilterError(f"filter {name!r} is enabled twice")
        seen.add(name)
        factory = discovered.factories.get(name)
        others = discovered.duplicates.get(name)
        if others:
            modules = ", ".join([discovered.origins[name], *others])
            raise FilterError(
                f"filter {name!r} is provided by more than one plugin module ({modules}); uninstall all but one"
            )
        if factory is None:
            broken = "; ".join(
                f"{module}: {message}" for module, message in discovered.problems
            )
            known = ", ".join(sorted(discovered.factories)) or "none"
            hint = f" (broken plugins: {broken})" if broken else ""
            raise FilterError(
                f"filter {name!r} is enabled but no installed plugin provides it; available: {known}{hint}"
            )
        filters.append(buildFilter(factory, name, tables.get(name, {})))
    return filters


def _oneLine(text: str) -> str:
    """
    @return: C{text} with its line breaks turned into spaces, for messages
        that promise one line.
    """
    return " ".join(text.splitlines())


def describeFilters(discovered: Discovered) -> str:
    """
    @return: the text of C{--list-filters}: each filter with its
        description and origin module, then any broken plugins.
    """
    lines = []
    for name in sorted(discovered.factories):
        factory = discovered.factories[name]
        lines.append(f"{name:<16} {factory.description}  [{discovered.origins[name]}]")
    if not lines:
        lines.append("(no filters installed)")
    for module, message in discovered.problems:
        lines.append(f"BROKEN {module}: {message}")
    return "\n".join(lines)

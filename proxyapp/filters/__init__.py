# -*- test-case-name: tests.test_filters_access -*-
"""
Built-in filter implementations, one small module each, and the assembly
of the filter list a proxy runs.

The built-ins are reached through the same discovery as third-party
filters (C{proxyapp.plugins.proxyapp_builtins}).  C{access} always runs
first (it carries the never-an-open-proxy default) and C{auth} second when
C{[auth] htpasswd} is set; then the filters named in C{[filters] enabled}.
"""

from __future__ import annotations

from typing import Any

from twisted.logger import Logger

from proxyapp.chain import EnabledFilter
from proxyapp.config import ConfigError, Settings

log = Logger()


def accessTable(settings: Settings) -> dict[str, Any]:
    """
    @return: the C{access} filter's configuration from C{[access]}.
    """
    table: dict[str, Any] = {
        "blocked_domains": settings.blockedDomains,
        "blocked_domains_files": settings.blockedDomainsFiles,
    }
    if settings.allowedClients is not None:
        table["allowed_clients"] = settings.allowedClients
    return table


# The auth filter's keys that live in [auth] rather than [filter.auth].
_AUTH_SECTIONS = {"htpasswd": "auth", "realm": "auth", "failure_delay": "auth"}


def buildChainFilters(settings: Settings) -> list[EnabledFilter]:
    """
    Build every filter the settings call for, in run order.

    @raise ConfigError: naming the filter (and the file) that cannot be
        built.
    """
    from proxyapp.discovery import (
        FilterError,
        buildFilter,
        buildFilters,
        findFilterFactories,
    )

    where = f"{settings.configFile}: " if settings.configFile else ""
    discovered = findFilterFactories()
    tables = dict(settings.filterTables)
    if "auth" in tables:
        authTable = dict(tables["auth"])
        if authTable.get("on_error", "fail") != "fail":
            raise ConfigError(
                f'{where}[filter.auth] on_error: only "fail"; the auth filter'
                " always fails closed"
            )
        if "deadline" in authTable:
            raise ConfigError(
                f"{where}[filter.auth] deadline: not settable; it is [filters] deadline"
            )
        # The auth filter answers before the chain's deadline, and checks
        # that its throttling delay fits under it.
        authTable["deadline"] = settings.filterDeadline
        tables["auth"] = authTable
    authEnabled = settings.htpasswd is not None or "auth" in settings.filters
    if (
        authEnabled
        and settings.htpasswd is None
        and "htpasswd" not in tables.get("auth", {})
    ):
        raise ConfigError(
            f"{where}[filters] enabled: the auth filter needs a password file"
            " ([auth] htpasswd, [filter.auth] htpasswd or --htpasswd)"
        )
    try:
        table = accessTable(settings)
        filters = [
            buildFilter(
                _builtin(discovered, "access"),
                "access",
                table,
                dict.fromkeys(table, "access"),
            )
        ]
        if settings.htpasswd is not None:
            # [auth] carries the common keys; [filter.auth] may tune the rest
            # (max_delay, block_after, forget_after, cache_seconds,
            # max_checks).
            authTable = dict(tables.get("auth", {}))
            for key in _AUTH_SECTIONS:
                if key in authTable:
                    # Both set: which one holds would be a guess (it was
                    # [auth]'s, silently).
                    raise FilterError(
                        f"[filter.auth] {key}: authentication is set up by"
                        f" [auth] htpasswd (or --htpasswd), so {key} belongs"
                        " in [auth] too"
                    )
            authTable.update(
                htpasswd=settings.htpasswd,
                realm=settings.authRealm,
                failure_delay=settings.authFailureDelay,
                deadline=settings.filterDeadline,
            )
            filters.append(
                buildFilter(
                    _builtin(discovered, "auth"), "auth", authTable, _AUTH_SECTIONS
                )
            )
        implicit = {f.name for f in filters}
        enabled = [name for name in settings.filters if name not in implicit]
        filters += buildFilters(enabled, tables, discovered)
    except FilterError as e:
        raise ConfigError(f"{where}{e}")
    if "access" in settings.filterTables:
        raise ConfigError(
            f"{where}[filter.access]: the access filter is configured in [access]"
        )
    if "auth" in settings.filterTables and not authEnabled:
        log.warn(
            "{where}[filter.auth] is set, but neither [auth] htpasswd nor "
            '"auth" in [filters] enabled is (so no authentication); its '
            "settings are not used",
            where=where,
        )
    for name in sorted(set(settings.filterTables) - set(settings.filters) - {"auth"}):
        if name not in discovered.factories:
            raise ConfigError(
                f"{where}[filter.{name}]: no installed filter is called {name!r}"
            )
        # Probably a filter someone meant to enable; its table is not even
        # checked, since building an unused filter could have effects.
        log.warn(
            "{where}[filter.{name}] is set, but {name!r} is not in [filters] "
            "enabled; its settings are not used",
            where=where,
            name=name,
        )
    return filters


def _builtin(discovered: Any, name: str) -> Any:
    factory = discovered.factories.get(name)
    if factory is None:
        from proxyapp.discovery import FilterError

        raise FilterError(
            f"the built-in filter {name!r} was not discovered; is proxyapp installed completely?"
        )
    return factory

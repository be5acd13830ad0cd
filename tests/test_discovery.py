# -*- test-case-name: tests.test_discovery -*-
"""
Tests for L{proxyapp.discovery}: finding filter factories with
C{twisted.plugin}, reporting broken plugins by module, building the enabled
filters, and C{twistd webproxy --list-filters}.

Broken plugins are tried in a throwaway plugin package written to a
temporary directory, never in C{proxyapp.plugins} itself.
"""

from __future__ import annotations

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path
from types import ModuleType

from twisted.logger import formatEvent, globalLogPublisher
from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from proxyapp.chain import FAIL, PASS, EnabledFilter
from proxyapp.config import ConfigError, Settings
from proxyapp import discovery
from proxyapp.discovery import (
    FILTER_INTERFACES,
    FilterError,
    buildFilter,
    buildFilters,
    describeFilters,
    findFilterFactories,
)
from proxyapp.filters import buildChainFilters
from proxyapp.interfaces import IFilterFactory, IRequestFilter
from tests import temporaryDirectory

REPO_ROOT = Path(__file__).resolve().parent.parent

BUILTINS = ["access", "auth", "headers", "privacy", "rewrite"]

# The modules of the throwaway plugin package.
HEADER = """
from twisted.plugin import IPlugin
from zope.interface import implementer
from proxyapp.interfaces import IFilterFactory, IRequestFilter, IResponseFilter
from tests import temporaryDirectory


@implementer(IRequestFilter)
class Tag:
    def __init__(self, value):
        self.value = value

    def filterRequest(self, request):
        request.headers.add(b"X-Tag", self.value)
        return request


@implementer(IPlugin, IFilterFactory)
class Factory:
    def __init__(self, name, build, description="A test filter."):
        self.name = name
        self.description = description
        self.build = build

    def makeFilter(self, config):
        return self.build(config)
"""

MODULES = {
    "dummy_good": """
def build(config):
    unknown = set(config) - {"value"}
    if unknown:
        raise ValueError(f"unknown key {sorted(unknown)[0]!r}; expected value")
    return Tag(config.get("value", "x").encode())

good = Factory("good", build, "Tags requests.")
""",
    "dummy_second": """
second = Factory("second", lambda config: Tag(b"second"))
""",
    "dummy_explodes": """
raise RuntimeError("kaboom at import")
""",
    "dummy_invalid": """
@implementer(IPlugin, IFilterFactory)
class NoMakeFilter:
    name = "invalid"
    description = "Claims IFilterFactory without makeFilter."

invalid = NoMakeFilter()
""",
    "dummy_builds_nothing": """
nothing = Factory("nothing", lambda config: object())
""",
    "dummy_builds_broken": """
@implementer(IRequestFilter)
class Liar:
    pass

liar = Factory("liar", lambda config: Liar())
""",
    "dummy_crashes": """
def build(config):
    raise RuntimeError("makeFilter crashed")

crashes = Factory("crashes", build)
""",
    "dummy_unnamed": """
unnamed = Factory("", lambda config: Tag(b"x"))
""",
}


def writePluginPackage(root: Path, packageName: str, modules: dict[str, str]) -> None:
    """
    Write a plugin package C{packageName} with C{modules} under C{root}.
    """
    package = root / packageName
    package.mkdir()
    (package / "__init__.py").write_text("")
    for name, body in modules.items():
        (package / f"{name}.py").write_text(
            textwrap.dedent(HEADER) + textwrap.dedent(body)
        )


class DummyPackageMixin:
    """
    Provides C{self.package}: a fresh plugin package holding L{MODULES},
    importable for the duration of one test.
    """

    modules = MODULES

    def setUp(self) -> None:
        self.root = Path(temporaryDirectory(self, "webproxy-plugins-"))
        self.packageName = f"dummyplugins_{os.getpid()}_{id(self)}"
        writePluginPackage(self.root, self.packageName, self.modules)
        sys.path.insert(0, str(self.root))
        self.addCleanup(self._clean)  # type: ignore[attr-defined]
        self.package: ModuleType = importlib.import_module(self.packageName)

    def _clean(self) -> None:
        sys.path.remove(str(self.root))
        for name in list(sys.modules):
            if name == self.packageName or name.startswith(self.packageName + "."):
                del sys.modules[name]
        importlib.invalidate_caches()

    def discover(self):  # type: ignore[no-untyped-def]
        found = findFilterFactories(self.package)
        # getPlugins logs the import error of the exploding module itself.
        self.flushLoggedErrors(RuntimeError)  # type: ignore[attr-defined]
        return found


class BuiltinTests(SynchronousTestCase):
    """
    The built-in filters are found through the same plugin discovery third
    parties use.
    """

    def test_findsEveryBuiltin(self) -> None:
        """
        Every built-in is discovered from C{proxyapp.plugins.proxyapp_builtins}
        and provides IPlugin and IFilterFactory.
        """
        found = findFilterFactories()
        for name in BUILTINS:
            self.assertIn(name, found.factories)
            factory = found.factories[name]
            self.assertTrue(verifyObject(IPlugin, factory))
            self.assertTrue(verifyObject(IFilterFactory, factory))
            self.assertEqual(factory.name, name)
            self.assertIsInstance(factory.description, str)
            self.assertTrue(factory.description)
            self.assertEqual(found.origins[name], "proxyapp.plugins.proxyapp_builtins")

    def test_noProblemsInTree(self) -> None:
        """
        The project's own plugin package has no broken plugins.
        """
        found = findFilterFactories()
        self.assertEqual(
            [p for p in found.problems if p[0].startswith("proxyapp.plugins.proxyapp")],
            [],
        )

    def test_builtinImplementationsExist(self) -> None:
        """
        Every discovered built-in has an implementation module in
        C{proxyapp.filters} (otherwise enabling it would fail).
        """
        found = findFilterFactories()
        missing = [
            name
            for name in BUILTINS
            if importlib.util.find_spec(
                f"proxyapp.filters.{found.factories[name].module}"
            )
            is None
        ]
        self.assertEqual(missing, [])

    def test_accessBuilds(self) -> None:
        """
        The C{access} built-in builds and verifies with an empty table.
        """
        found = findFilterFactories()
        enabled = buildFilter(found.factories["access"], "access", {})
        self.assertIsInstance(enabled, EnabledFilter)
        provided = [i for i in FILTER_INTERFACES if i.providedBy(enabled.filter)]
        self.assertTrue(provided)
        for interface in provided:
            self.assertTrue(verifyObject(interface, enabled.filter))

    def test_builtinsValidateTables(self) -> None:
        """
        Every built-in either builds a verified filter from an empty table or
        refuses it with a L{FilterError}; an unknown key is always refused
        with a L{FilterError} naming the table and the key.
        """
        found = findFilterFactories()
        for name in BUILTINS:
            try:
                enabled = buildFilter(found.factories[name], name, {})
            except FilterError as e:
                self.assertIn(f"[filter.{name}]", str(e))
            else:
                provided = [
                    i for i in FILTER_INTERFACES if i.providedBy(enabled.filter)
                ]
                self.assertTrue(provided, name)
                for interface in provided:
                    self.assertTrue(verifyObject(interface, enabled.filter))
            error = self.assertRaises(
                FilterError,
                buildFilter,
                found.factories[name],
                name,
                {"no_such_key": 1},
            )
            self.assertIn(f"[filter.{name}]", str(error))
            self.assertIn("no_such_key", str(error))

    def test_discoveryDoesNotEnable(self) -> None:
        """
        Building with nothing enabled builds nothing, however many filters
        are installed.
        """
        self.assertEqual(buildFilters([], {}), [])


class DummyPackageTests(DummyPackageMixin, SynchronousTestCase):
    """
    Discovery in a plugin package holding good and broken plugins.
    """

    def test_goodFound(self) -> None:
        """
        Valid factories are found with the module they came from.
        """
        found = self.discover()
        self.assertEqual(
            sorted(found.factories), ["crashes", "good", "liar", "nothing", "second"]
        )
        self.assertEqual(found.origins["good"], f"{self.packageName}.dummy_good")
        self.assertEqual(found.factories["good"].description, "Tags requests.")

    def test_importErrorReported(self) -> None:
        """
        A module that raises on import is reported with its module name and
        the error, and skipped.
        """
        found = self.discover()
        problems = dict(found.problems)
        message = problems[f"{self.packageName}.dummy_explodes"]
        self.assertIn("RuntimeError", message)
        self.assertIn("kaboom at import", message)

    def test_invalidFactoryReported(self) -> None:
        """
        A factory failing C{verifyObject} is reported with its module name
        and skipped.
        """
        found = self.discover()
        problems = dict(found.problems)
        self.assertIn("makeFilter", problems[f"{self.packageName}.dummy_invalid"])
        self.assertNotIn("invalid", found.factories)

    def test_emptyNameReported(self) -> None:
        """
        A factory with an empty name is reported and skipped.
        """
        found = self.discover()
        self.assertIn(f"{self.packageName}.dummy_unnamed", dict(found.problems))

    def test_problemsEachOnOneLine(self) -> None:
        """
        Every problem message is one line.
        """
        for module, message in self.discover().problems:
            self.assertNotIn("\n", message, module)

    def test_buildGood(self) -> None:
        """
        An enabled good filter is built with its table, on_error taken out.
        """
        found = self.discover()
        [enabled] = buildFilters(
            ["good"], {"good": {"value": "v", "on_error": "pass"}}, found
        )
        self.assertEqual(enabled.name, "good")
        self.assertEqual(enabled.onError, PASS)
        self.assertEqual(enabled.filter.value, b"v")
        self.assertTrue(verifyObject(IRequestFilter, enabled.filter))

    def test_buildOrder(self) -> None:
        """
        Filters are built in the enabled order.
        """
        found = self.discover()
        filters = buildFilters(["second", "good"], {"good": {"value": "g"}}, found)
        self.assertEqual([f.name for f in filters], ["second", "good"])
        self.assertEqual([f.filter.value for f in filters], [b"second", b"g"])
        self.assertEqual([f.onError for f in filters], [FAIL, FAIL])

    def test_enabledUnknown(self) -> None:
        """
        Enabling a name no plugin provides raises L{FilterError} naming it
        and listing what is available.
        """
        found = self.discover()
        error = self.assertRaises(FilterError, buildFilters, ["nosuch"], {}, found)
        self.assertIn("'nosuch'", str(error))
        self.assertIn("good", str(error))

    def test_enabledBrokenImport(self) -> None:
        """
        Enabling a filter whose module failed to import names that module
        in the error.
        """
        found = self.discover()
        error = self.assertRaises(FilterError, buildFilters, ["explodes"], {}, found)
        self.assertIn(f"{self.packageName}.dummy_explodes", str(error))
        self.assertIn("kaboom at import", str(error))

    def test_enabledInvalidFactory(self) -> None:
        """
        Enabling the name of an invalid factory names its module.
        """
        found = self.discover()
        error = self.assertRaises(FilterError, buildFilters, ["invalid"], {}, found)
        self.assertIn("'invalid'", str(error))
        self.assertIn(f"{self.packageName}.dummy_invalid", str(error))

    def test_builtObjectProvidesNothing(self) -> None:
        """
        A factory building an object that provides no filter interface is
        refused, naming the filter.
        """
        found = self.discover()
        error = self.assertRaises(FilterError, buildFilters, ["nothing"], {}, found)
        self.assertIn("'nothing'", str(error))
        self.assertIn("no filter interface", str(error))

    def test_builtObjectBroken(self) -> None:
        """
        A built filter that claims IRequestFilter without implementing it
        fails C{verifyObject} and is refused, naming filter and interface.
        """
        found = self.discover()
        error = self.assertRaises(FilterError, buildFilters, ["liar"], {}, found)
        self.assertIn("'liar'", str(error))
        self.assertIn("IRequestFilter", str(error))

    def test_makeFilterValueError(self) -> None:
        """
        A factory's ValueError becomes a L{FilterError} naming the table.
        """
        found = self.discover()
        error = self.assertRaises(
            FilterError, buildFilters, ["good"], {"good": {"valu": 1}}, found
        )
        self.assertIn("[filter.good]", str(error))
        self.assertIn("'valu'", str(error))

    def test_makeFilterCrashes(self) -> None:
        """
        A factory whose C{makeFilter} raises something other than
        ValueError is still reported as a L{FilterError} naming the filter,
        not as a traceback.
        """
        found = self.discover()
        error = self.assertRaises(FilterError, buildFilters, ["crashes"], {}, found)
        self.assertIn("crashes", str(error))
        self.assertIn("makeFilter crashed", str(error))

    def test_badOnError(self) -> None:
        """
        C{on_error} other than "fail" or "pass" is refused, naming the
        table and the key.
        """
        found = self.discover()
        error = self.assertRaises(
            FilterError, buildFilters, ["good"], {"good": {"on_error": "ignore"}}, found
        )
        self.assertIn("[filter.good] on_error", str(error))

    def test_describe(self) -> None:
        """
        C{describeFilters} lists each filter with its description and
        origin module, sorted, then each broken plugin with its module.
        """
        text = describeFilters(self.discover())
        lines = text.splitlines()
        [good] = [line for line in lines if line.startswith("good ")]
        self.assertIn("Tags requests.", good)
        self.assertIn(f"[{self.packageName}.dummy_good]", good)
        names = [line.split()[0] for line in lines if not line.startswith("BROKEN")]
        self.assertEqual(names, sorted(names))
        broken = [line for line in lines if line.startswith("BROKEN")]
        self.assertTrue(
            any(f"{self.packageName}.dummy_explodes" in line for line in broken)
        )
        self.assertTrue(
            any(f"{self.packageName}.dummy_invalid" in line for line in broken)
        )


class DuplicateTests(DummyPackageMixin, SynchronousTestCase):
    """
    Two plugins claiming the same name.
    """

    modules = {
        "dummy_first": 'first = Factory("same", lambda config: Tag(b"first"))\n',
        "dummy_second": 'second = Factory("same", lambda config: Tag(b"second"))\n',
    }

    def test_duplicateReported(self) -> None:
        """
        The second factory claiming a name already taken is reported with
        its module and the module that has the name, and skipped.
        """
        found = self.discover()
        self.assertEqual(list(found.factories), ["same"])
        [(module, message)] = found.problems
        winner = found.origins["same"]
        self.assertEqual(
            {module, winner},
            {f"{self.packageName}.dummy_first", f"{self.packageName}.dummy_second"},
        )
        self.assertIn("already provided by " + winner, message)

    def test_ambiguousNameNotEnabled(self) -> None:
        """
        A name two plugin modules provide cannot be enabled: which one ran
        would depend on the order of C{sys.path}.  The error names both.
        """
        found = self.discover()
        error = self.assertRaises(FilterError, buildFilters, ["same"], {}, found)
        self.assertIn("more than one plugin module", str(error))
        self.assertIn(f"{self.packageName}.dummy_first", str(error))
        self.assertIn(f"{self.packageName}.dummy_second", str(error))


class FactoryExitTests(DummyPackageMixin, SynchronousTestCase):
    """
    Factories that fail in ways a message must still name in one line.
    """

    modules = {
        "dummy_exits": (
            "import sys\n"
            "def exits(config):\n"
            "    sys.exit(7)\n"
            "def lines(config):\n"
            "    raise RuntimeError('kaboom\\nsecond line')\n"
            'exiting = Factory("exits", exits)\n'
            'multiline = Factory("lines", lines)\n'
        ),
    }

    def test_exitingFactory(self) -> None:
        """
        A factory calling C{sys.exit} stops the start with a message naming
        the filter, not a silent exit status.
        """
        error = self.assertRaises(
            FilterError, buildFilters, ["exits"], {}, self.discover()
        )
        self.assertIn("filter 'exits': its factory failed: SystemExit: 7", str(error))

    def test_messageOnOneLine(self) -> None:
        """
        A factory's message with line breaks is given on one line.
        """
        error = self.assertRaises(
            FilterError, buildFilters, ["lines"], {}, self.discover()
        )
        self.assertIn("RuntimeError: kaboom second line", str(error))
        self.assertNotIn("\n", str(error))


class EmptyPackageTests(DummyPackageMixin, SynchronousTestCase):
    """
    A plugin package with no filters.
    """

    modules: dict[str, str] = {}

    def test_describeEmpty(self) -> None:
        """
        With nothing installed, the listing says so.
        """
        found = self.discover()
        self.assertEqual(found.factories, {})
        self.assertEqual(describeFilters(found), "(no filters installed)")


def twistd(
    *args: str, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd} from the checkout (so that the C{twisted/plugins/}
    dropin is found) and capture its output.
    """
    environment = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    environment["PYTHONPATH"] = str(REPO_ROOT)
    environment.update(env or {})
    return subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *args],
        cwd=str(REPO_ROOT),
        env=environment,
        capture_output=True,
        text=True,
        timeout=60,
    )


class ListFiltersTests(SynchronousTestCase):
    """
    C{twistd webproxy --list-filters}.
    """

    def test_listsBuiltins(self) -> None:
        """
        Every built-in is printed with its description and origin module,
        and the command exits 0 without starting a proxy.
        """
        result = twistd("webproxy", "--list-filters")
        self.assertEqual(result.returncode, 0, result.stderr)
        found = findFilterFactories()
        for name in BUILTINS:
            [line] = [
                line
                for line in result.stdout.splitlines()
                if line.split()[:1] == [name]
            ]
            self.assertIn(found.factories[name].description, line)
            self.assertIn("[proxyapp.plugins.proxyapp_builtins]", line)
        self.assertNotIn("Traceback", result.stderr)

    def test_listsPluginFromSysPath(self) -> None:
        """
        A C{proxyapp/plugins/} directory elsewhere on the path (as a
        distribution installs it) is discovered too; a broken module there
        is listed as BROKEN with its module name, and the listing still
        succeeds.
        """
        root = Path(temporaryDirectory(self, "webproxy-dropins-"))
        plugins = root / "proxyapp" / "plugins"
        plugins.mkdir(parents=True)
        (plugins / "testdrop_good.py").write_text(
            textwrap.dedent(HEADER) + textwrap.dedent(MODULES["dummy_good"])
        )
        (plugins / "testdrop_broken.py").write_text(
            "raise RuntimeError('kaboom at import')\n"
        )
        result = twistd(
            "webproxy",
            "--list-filters",
            env={"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(root)])},
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        [line] = [
            line for line in result.stdout.splitlines() if line.startswith("good ")
        ]
        self.assertIn("[proxyapp.plugins.testdrop_good]", line)
        self.assertIn("BROKEN proxyapp.plugins.testdrop_broken: ", result.stdout)
        self.assertIn("kaboom at import", result.stdout)

    def test_builtinNameCannotBeTaken(self) -> None:
        """
        A third-party plugin claiming a built-in's name (here C{access},
        which keeps the proxy from being open) is reported and skipped; the
        built-in keeps its name.
        """
        root = Path(temporaryDirectory(self, "webproxy-dropins-"))
        plugins = root / "proxyapp" / "plugins"
        plugins.mkdir(parents=True)
        (plugins / "testdrop_access.py").write_text(
            textwrap.dedent(HEADER)
            + 'impostor = Factory("access", lambda config: Tag(b"x"), "Impostor.")\n'
        )
        result = twistd(
            "webproxy",
            "--list-filters",
            env={"PYTHONPATH": os.pathsep.join([str(REPO_ROOT), str(root)])},
        )
        self.assertEqual(result.returncode, 0, result.stderr)
        [line] = [
            line for line in result.stdout.splitlines() if line.startswith("access ")
        ]
        self.assertIn("[proxyapp.plugins.proxyapp_builtins]", line)
        self.assertIn(
            "BROKEN proxyapp.plugins.testdrop_access: filter name 'access' is already provided",
            result.stdout,
        )


class ChainSettingsTests(SynchronousTestCase):
    """
    L{buildChainFilters} names the place in the configuration where a bad
    setting of a built-in filter was made.
    """

    def test_accessErrorNamesAccessSection(self) -> None:
        """
        A bad C{[access]} value is reported under C{[access]}, where it is
        set, not under C{[filter.access]}, which does not exist.
        """
        error = self.assertRaises(
            ConfigError,
            buildChainFilters,
            Settings(allowedClients=["10.0.0.0/33"], configFile="w.toml"),
        )
        self.assertTrue(
            str(error).startswith("w.toml: [access] allowed_clients: "), str(error)
        )

    def test_authErrorNamesAuthSection(self) -> None:
        """
        An unreadable password file is reported under C{[auth] htpasswd}.
        """
        missing = os.path.join(temporaryDirectory(self), "missing")
        error = self.assertRaises(
            ConfigError, buildChainFilters, Settings(htpasswd=missing)
        )
        self.assertTrue(str(error).startswith("[auth] htpasswd: "), str(error))

    def test_authSettingsNamedOnce(self) -> None:
        """
        An C{[auth]} value the auth filter refuses is reported under
        C{[auth]}, and a C{[filter.auth]} one under C{[filter.auth]}, each
        naming the key once (the filter's own messages start with its name).
        """
        path = os.path.join(temporaryDirectory(self), "htpasswd")
        with open(path, "w") as f:
            f.write("# nobody yet\n")
        error = self.assertRaises(
            ConfigError,
            buildChainFilters,
            Settings(htpasswd=path, authRealm='a"b', configFile="w.toml"),
        )
        self.assertTrue(str(error).startswith("w.toml: [auth] realm: "), str(error))
        error = self.assertRaises(
            ConfigError,
            buildChainFilters,
            Settings(htpasswd=path, filterTables={"auth": {"max_delay": "x"}}),
        )
        self.assertTrue(str(error).startswith("[filter.auth] max_delay: "), str(error))

    def test_authKeysInBothTablesRefused(self) -> None:
        """
        With C{[auth] htpasswd} (or C{--htpasswd}) set, a C{[filter.auth]}
        table that also sets C{htpasswd}, C{realm} or C{failure_delay} stops
        the start, naming that key: the C{[auth]} value (or its default)
        silently replaced it before.  The filter's own keys are still
        taken.
        """
        path = os.path.join(temporaryDirectory(self), "htpasswd")
        with open(path, "w") as f:
            f.write("# nobody yet\n")
        for key, value in [
            ("realm", "Corp"),
            ("htpasswd", "/nonexistent"),
            ("failure_delay", 2.0),
        ]:
            error = self.assertRaises(
                ConfigError,
                buildChainFilters,
                Settings(
                    htpasswd=path,
                    filterTables={"auth": {key: value}},
                    configFile="w.toml",
                ),
            )
            self.assertEqual(
                str(error),
                f"w.toml: [filter.auth] {key}: authentication is set up by [auth]"
                f" htpasswd (or --htpasswd), so {key} belongs in [auth] too",
            )
        [_, auth] = buildChainFilters(
            Settings(htpasswd=path, filterTables={"auth": {"max_delay": 3.0}})
        )
        self.assertEqual(auth.name, "auth")

    def test_authEnabledWithoutPasswordFile(self) -> None:
        """
        Enabling C{auth} by name without a password file says what is
        missing, in one line.
        """
        error = self.assertRaises(
            ConfigError, buildChainFilters, Settings(filters=["auth"])
        )
        self.assertEqual(
            str(error),
            "[filters] enabled: the auth filter needs a password file"
            " ([auth] htpasswd, [filter.auth] htpasswd or --htpasswd)",
        )

    def test_authTableWithoutPasswordFileWarns(self) -> None:
        """
        A C{[filter.auth]} table without a password file (so no
        authentication) is not used, and the start says so, as for any
        other filter table not in use.
        """
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        buildChainFilters(Settings(filterTables={"auth": {"max_delay": 1.0}}))
        messages = [formatEvent(e) for e in events]
        self.assertTrue(
            any("[filter.auth] is set" in m and "not used" in m for m in messages),
            messages,
        )

    def test_authTableMayNameThePasswordFile(self) -> None:
        """
        C{auth} enabled by name with its password file in C{[filter.auth]}
        is built, without the warning about an unused table.
        """
        path = os.path.join(temporaryDirectory(self), "htpasswd")
        with open(path, "w") as f:
            f.write("# nobody yet\n")
        events: list[dict] = []
        globalLogPublisher.addObserver(events.append)
        self.addCleanup(globalLogPublisher.removeObserver, events.append)
        filters = buildChainFilters(
            Settings(filters=["auth"], filterTables={"auth": {"htpasswd": path}})
        )
        self.assertEqual([f.name for f in filters], ["access", "auth"])
        self.assertFalse(any("not used" in formatEvent(e) for e in events))


class BuiltinFoundSecondTests(DummyPackageMixin, SynchronousTestCase):
    """
    A built-in keeps its name whichever module discovery finds first (the
    order of a directory listing, when no plugin cache can be written).
    """

    modules = {
        "dummy_first": 'first = Factory("same", lambda config: Tag(b"first"))\n',
        "dummy_second": 'second = Factory("same", lambda config: Tag(b"second"))\n',
    }

    def test_builtinWinsEitherWay(self) -> None:
        """
        Whichever of two modules is the built-ins' module provides the
        name, and the other is reported and skipped.
        """
        for builtin, other in (
            ("dummy_first", "dummy_second"),
            ("dummy_second", "dummy_first"),
        ):
            self.patch(discovery, "_BUILTINS", f"{self.packageName}.{builtin}")
            found = self.discover()
            self.assertEqual(found.origins["same"], f"{self.packageName}.{builtin}")
            self.assertEqual(found.duplicates, {})
            [(module, message)] = found.problems
            self.assertEqual(module, f"{self.packageName}.{other}")
            [built] = buildFilters(["same"], {}, found)
            self.assertEqual(built.name, "same")

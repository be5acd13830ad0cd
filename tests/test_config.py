# -*- test-case-name: tests.test_config -*-
"""
Tests for L{proxyapp.config}: the TOML configuration file, its one-line
errors, its precedence below the command line, and the example file
C{webproxy.example.toml}, which must document every key with its default.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

from twisted.logger import LogLevel, capturedLogs, formatEvent
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from proxyapp.config import (
    KEYS,
    SECTIONS,
    ConfigError,
    PortSet,
    Settings,
    checkValue,
    readConfigFile,
)
from proxyapp.tap import Options
from tests import temporaryDirectory

REPO_ROOT = Path(__file__).resolve().parent.parent
EXAMPLE = REPO_ROOT / "webproxy.example.toml"

# Keys whose default cannot be written as a TOML value (None, or a value
# computed at start-up); the example shows them commented out.
COMMENTED = {
    ("server", "via_pseudonym"),
    ("access", "allowed_clients"),
    ("auth", "htpasswd"),
    ("tls", "upstream_ca_file"),
}


def sectionText(text: str, section: str) -> str:
    """
    @return: the lines of C{text} from C{[section]} to the next table
        header (commented lines included).
    """
    match = re.search(rf"^\[{re.escape(section)}\]\n(.*?)(?=^\[|\Z)", text, re.M | re.S)
    assert match, f"no [{section}] in the example file"
    return match.group(1)


class ExampleFileTests(SynchronousTestCase):
    """
    C{webproxy.example.toml} documents every key with its default, so it
    cannot drift from L{KEYS} and L{Settings}.
    """

    def setUp(self) -> None:
        self.text = EXAMPLE.read_text(encoding="utf-8")
        self.document = tomllib.loads(self.text)

    def test_everyKeyWithDefault(self) -> None:
        """
        Every key in L{KEYS} is set in the example to its L{Settings}
        default, except the few whose default is not a value, which are
        shown commented out in their section.
        """
        defaults = Settings()
        for key in KEYS:
            place = f"[{key.section}] {key.key}"
            if (key.section, key.key) in COMMENTED:
                self.assertNotIn(key.key, self.document.get(key.section, {}), place)
                self.assertRegex(
                    sectionText(self.text, key.section),
                    rf"(?m)^# {re.escape(key.key)} = ",
                    place,
                )
                continue
            self.assertIn(
                key.key,
                self.document.get(key.section, {}),
                f"{place} is missing from the example",
            )
            value = checkValue(key, self.document[key.section][key.key], place)
            self.assertEqual(value, getattr(defaults, key.attr), place)
            self.assertEqual(type(value), type(getattr(defaults, key.attr)), place)

    def test_commentedOnlyWhenNecessary(self) -> None:
        """
        The keys left commented out really have no writable default: it is
        C{None} or not a valid value of the key.
        """
        defaults = Settings()
        byPlace = {(k.section, k.key): k for k in KEYS}
        for place in COMMENTED:
            key = byPlace[place]
            default = getattr(defaults, key.attr)
            self.assertTrue(default is None or key.check(default) is not None, place)

    def test_noOtherKeys(self) -> None:
        """
        The example has no section or key that L{KEYS} does not know, and
        loads without error.
        """
        known = {(k.section, k.key) for k in KEYS}
        for section, table in self.document.items():
            self.assertIn(section, SECTIONS)
            for name in table:
                self.assertIn((section, name), known)
        values = readConfigFile(str(EXAMPLE))
        self.assertEqual(len(values), len(KEYS) - len(COMMENTED))

    def test_optionsNamed(self) -> None:
        """
        Every command-line option that has a key is named in the example,
        next to its key.
        """
        for key in KEYS:
            if key.option:
                self.assertIn(
                    f"--{key.option}", sectionText(self.text, key.section), key.key
                )
        for option, section in [
            ("--listen", "server"),
            ("--connect-port", "access"),
            ("--filter", "filters"),
        ]:
            self.assertIn(option, sectionText(self.text, section))

    def test_sameAsNoFile(self) -> None:
        """
        Starting with the example file gives the same settings as starting
        without a file.
        """
        withFile = Options()
        withFile.parseOptions(["--config", str(EXAMPLE), "--via-pseudonym", "p"])
        without = Options()
        without.parseOptions(["--via-pseudonym", "p"])
        a, b = withFile["settings"], without["settings"]
        a.configFile = None
        self.assertEqual(a, b)


class FileMixin:
    """
    Writes configuration files to a temporary directory.
    """

    def write(self, text: str, name: str = "webproxy.toml") -> str:
        directory = getattr(self, "_directory", None)
        if directory is None:
            directory = self._directory = temporaryDirectory(self, "webproxy-config-")
        path = os.path.join(directory, name)
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
        return path


class ReadTests(FileMixin, SynchronousTestCase):
    """
    L{readConfigFile} turns a valid file into settings values.
    """

    def test_values(self) -> None:
        """
        Keys become L{Settings} attribute names; integers given for
        seconds become floats; connect ports become a L{PortSet}.
        """
        path = self.write(
            "[server]\nport = 3128\ndrain_timeout = 3\n"
            "[timeouts]\nconnect = 2.5\n"
            '[access]\nconnect_ports = [443, "8000-8100"]\nblocked_domains = ["ads.example"]\n'
            '[filters]\nenabled = ["b", "a"]\ndeadline = 1\n'
        )
        values = readConfigFile(path)
        self.assertEqual(values["port"], 3128)
        self.assertEqual(values["drainTimeout"], 3.0)
        self.assertIsInstance(values["drainTimeout"], float)
        self.assertEqual(values["connectTimeout"], 2.5)
        self.assertEqual(values["connectPorts"], PortSet(["443", "8000-8100"]))
        self.assertIn(8050, values["connectPorts"])
        self.assertEqual(values["blockedDomains"], ["ads.example"])
        self.assertEqual(values["filters"], ["b", "a"])
        self.assertEqual(values["filterDeadline"], 1.0)

    def test_onlyWhatIsSet(self) -> None:
        """
        Keys the file leaves out are not in the result (they keep their
        defaults, or the command line's values).
        """
        self.assertEqual(
            readConfigFile(self.write("[server]\nport = 1\n")), {"port": 1}
        )
        self.assertEqual(readConfigFile(self.write("")), {})

    def test_filterTables(self) -> None:
        """
        C{[filter.NAME]} tables are returned as they are, keyed by name.
        """
        path = self.write(
            '[filter.example]\ngreeting = "hi"\non_error = "pass"\n[filter.other]\n'
        )
        self.assertEqual(
            readConfigFile(path)["filterTables"],
            {"example": {"greeting": "hi", "on_error": "pass"}, "other": {}},
        )


class ErrorTests(FileMixin, SynchronousTestCase):
    """
    Every mistake in the file is a L{ConfigError} whose message is one line
    naming the file, the key and what was expected.
    """

    def assertError(self, text: str, *expected: str) -> str:
        path = self.write(text)
        error = self.assertRaises(ConfigError, readConfigFile, path)
        message = str(error)
        self.assertNotIn("\n", message)
        self.assertTrue(message.startswith(path + ": "), message)
        for part in expected:
            self.assertIn(part, message)
        return message

    def test_unknownSection(self) -> None:
        """
        An unknown section is named, with the known ones.
        """
        self.assertError("[sever]\nport = 1\n", "[sever]", "[server]")

    def test_unknownKey(self) -> None:
        """
        An unknown key is named with its section and the section's keys.
        """
        self.assertError("[server]\nprot = 1\n", "[server] prot", "port")

    def test_wrongType(self) -> None:
        """
        A value of the wrong type names the key and what was expected.
        """
        self.assertError(
            '[server]\nport = "8080"\n',
            "[server] port",
            "expected a port number",
            "'8080'",
        )
        self.assertError("[server]\nport = 80.5\n", "[server] port")
        self.assertError("[server]\nport = true\n", "[server] port")
        self.assertError(
            '[timeouts]\nconnect = "10"\n',
            "[timeouts] connect",
            "expected a positive number",
        )
        self.assertError(
            '[filters]\nenabled = "example"\n', "[filters] enabled", "expected a list"
        )
        self.assertError(
            '[access]\nblocked_domains = ["ok", 3]\n', "[access] blocked_domains"
        )
        self.assertError('[log]\nformat = "xml"\n', "[log] format", '"combined"')

    def test_impossibleValue(self) -> None:
        """
        A value of the right type but out of range names the key.
        """
        self.assertError("[server]\nport = 65536\n", "[server] port", "0-65535")
        self.assertError(
            "[limits]\nmax_headers = 0\n", "[limits] max_headers", "positive"
        )
        self.assertError(
            "[limits]\nmax_body_bytes = -1\n",
            "[limits] max_body_bytes",
            "0 (unlimited)",
        )
        self.assertError("[timeouts]\nidle = 0\n", "[timeouts] idle", "positive")
        self.assertError("[server]\ndrain_timeout = -1\n", "[server] drain_timeout")
        self.assertError(
            '[access]\nconnect_ports = ["70000"]\n', "[access] connect_ports"
        )
        self.assertError("[access]\nconnect_ports = []\n", "[access] connect_ports")
        self.assertError(
            '[server]\nvia_pseudonym = "two words"\n', "[server] via_pseudonym"
        )

    def test_notFinite(self) -> None:
        """
        TOML's C{nan} and C{inf} are refused for every number of seconds: a
        drain deadline of C{now + nan} is never reached, and Twisted's
        timers refuse it with a traceback.
        """
        for value in ("nan", "inf", "+inf", "-nan", "1" + "0" * 400):
            self.assertError(
                f"[server]\ndrain_timeout = {value}\n", "[server] drain_timeout"
            )
            self.assertError(f"[timeouts]\nconnect = {value}\n", "[timeouts] connect")
            self.assertError(f"[timeouts]\nread = {value}\n", "[timeouts] read")

    def test_viaPseudonymToken(self) -> None:
        """
        The Via pseudonym is one RFC 9110 token: a non-ASCII one used to
        pass and crash the start, and CR LF used to pass and be written
        into every forwarded head (header injection).
        """
        for value in ("prøxy", "p\\r\\nX-Injected: 1", "a/b", "a;b", ""):
            self.assertError(
                f'[server]\nvia_pseudonym = "{value}"\n', "[server] via_pseudonym"
            )
        path = self.write('[server]\nvia_pseudonym = "proxy-1.example_b~"\n')
        self.assertEqual(readConfigFile(path)["viaPseudonym"], "proxy-1.example_b~")

    def test_notATable(self) -> None:
        """
        A section given as a plain value, or a C{filter.NAME} that is not a
        table, is named.
        """
        self.assertError("server = 1\n", "server must be a table")
        self.assertError("[filter]\nexample = 1\n", "filter.example must be a table")

    def test_invalidToml(self) -> None:
        """
        A syntax error names the file and the line.
        """
        self.assertError("[server]\nport = = 1\n", "not valid TOML", "line 2")

    def test_notUtf8(self) -> None:
        """
        A file that is not UTF-8 (Latin-1 text, binary garbage) is refused
        in one line naming the file and the offending byte, not with a
        traceback.
        """
        path = self.write("")
        for data in (b'[server]\nvia_pseudonym = "caf\xe9"\n', bytes(range(256)) * 8):
            with open(path, "wb") as f:
                f.write(data)
            error = self.assertRaises(ConfigError, readConfigFile, path)
            message = str(error)
            self.assertTrue(message.startswith(path + ": not valid TOML: "), message)
            self.assertIn("is not UTF-8", message)
            self.assertNotIn("\n", message)

    def test_nestedTooDeeply(self) -> None:
        """
        Arrays or inline tables nested thousands deep (which the TOML reader
        recurses into) are refused in one line, not with a traceback.
        """
        self.assertError(
            "[filters]\nenabled = " + "[" * 5000 + "]" * 5000 + "\n",
            "not valid TOML",
            "nested too deeply",
        )
        self.assertError("x = " + "{a=" * 3000 + "1" + "}" * 3000 + "\n", "nested")

    def test_missingFile(self) -> None:
        """
        A file that cannot be read is named.
        """
        path = os.path.join(temporaryDirectory(self), "nonexistent.toml")
        error = self.assertRaises(ConfigError, readConfigFile, path)
        self.assertIn(path, str(error))
        self.assertIn("cannot read", str(error))


def parse(*argv: str) -> Options:
    options = Options()
    options.parseOptions(list(argv))
    return options


class PrecedenceTests(FileMixin, SynchronousTestCase):
    """
    Defaults, then the file, then the command line.
    """

    def test_commandLineWins(self) -> None:
        """
        An option given on the command line overrides the file's key; the
        file's other keys apply.
        """
        path = self.write(
            '[server]\nport = 3128\ninterface = "::1"\n[timeouts]\nconnect = 2.0\n'
        )
        settings = parse("--config", path, "--port", "9", "--via-pseudonym", "p")[
            "settings"
        ]
        self.assertEqual(settings.port, 9)
        self.assertEqual(settings.interface, "::1")
        self.assertEqual(settings.connectTimeout, 2.0)
        self.assertEqual(settings.configFile, path)

    def test_fileOverDefaults(self) -> None:
        """
        Without the option, the file's value applies.
        """
        path = self.write("[server]\nport = 3128\n[filters]\ndeadline = 0.5\n")
        settings = parse("--config", path, "--via-pseudonym", "p")["settings"]
        self.assertEqual(settings.port, 3128)
        self.assertEqual(settings.filterDeadline, 0.5)
        self.assertEqual(settings.maxHeaders, Settings().maxHeaders)

    def test_everyOptionWins(self) -> None:
        """
        For every key that has an option, the option beats the file.
        """
        for key in KEYS:
            if not key.option or key.attr == "htpasswd":
                continue
            fileValue, optionValue = {
                int: (7, "8"),
                float: (7.0, "8"),
            }.get(key.parse, (None, None))
            if fileValue is None:
                continue
            path = self.write(
                f"[{key.section}]\n{key.key} = {fileValue!r}\n", f"{key.key}.toml"
            )
            settings = parse(
                "--config", path, f"--{key.option}", optionValue, "--via-pseudonym", "p"
            )["settings"]
            self.assertEqual(
                getattr(settings, key.attr), key.parse(optionValue), key.option
            )

    def test_repeatableOptionsReplace(self) -> None:
        """
        C{--listen}, C{--connect-port} and C{--filter} replace the file's
        lists instead of adding to them.
        """
        path = self.write(
            '[server]\nlisten = ["tcp:1"]\n[access]\nconnect_ports = [443]\n[filters]\nenabled = ["nosuch"]\n'
        )
        settings = parse(
            "--config",
            path,
            "--listen",
            "tcp:2",
            "--connect-port",
            "8443",
            "--filter",
            "access",
            "--via-pseudonym",
            "p",
        )["settings"]
        self.assertEqual(settings.listen, ["tcp:2"])
        self.assertEqual(settings.connectPorts, PortSet(["8443"]))
        self.assertEqual(settings.filters, ["access"])

    def test_listenOnlyFromFile(self) -> None:
        """
        A file with C{listen} and no C{port} listens only there; with
        C{port} too, on both.
        """
        path = self.write('[server]\nlisten = ["tcp:3128"]\n')
        self.assertFalse(parse("--config", path)["settings"].listenOnPort)
        path = self.write('[server]\nport = 8081\nlisten = ["tcp:3128"]\n', "both.toml")
        self.assertTrue(parse("--config", path)["settings"].listenOnPort)

    def test_badFileStopsStart(self) -> None:
        """
        Parsing options with a bad file exits with one line naming the file
        and the key (not a usage error with the whole help text).
        """
        path = self.write("[limits]\nmax_headers = -5\n")
        error = self.assertRaises(SystemExit, parse, "--config", path)
        message = str(error.code)
        self.assertNotIn("\n", message)
        self.assertIn(path, message)
        self.assertIn("[limits] max_headers", message)

    def test_badOptionNamed(self) -> None:
        """
        An option value that the file would refuse is refused naming the
        option.
        """
        error = self.assertRaises(usage.UsageError, parse, "--max-headers", "0")
        self.assertIn("--max-headers", str(error))

    def test_badListenInFile(self) -> None:
        """
        A C{listen} entry in the file that is not an endpoint description
        stops the start, naming the file and the key.
        """
        path = self.write('[server]\nlisten = ["3128"]\n')
        error = self.assertRaises(SystemExit, parse, "--config", path)
        self.assertIn(path, str(error.code))
        self.assertIn("[server] listen", str(error.code))

    def test_unknownFilterEnabled(self) -> None:
        """
        Enabling a filter that is not installed stops the start, naming the
        file and the filter.
        """
        path = self.write('[filters]\nenabled = ["nosuch"]\n')
        error = self.assertRaises(SystemExit, parse, "--config", path)
        self.assertIn(path, str(error.code))
        self.assertIn("'nosuch'", str(error.code))

    def test_unknownFilterTable(self) -> None:
        """
        A C{[filter.NAME]} table for a filter that is not installed stops
        the start, naming the table.
        """
        path = self.write("[filter.nosuch]\nx = 1\n")
        error = self.assertRaises(SystemExit, parse, "--config", path)
        self.assertIn(path, str(error.code))
        self.assertIn("[filter.nosuch]", str(error.code))

    def test_tableOfFilterNotEnabled(self) -> None:
        """
        A C{[filter.NAME]} table of an installed filter that is not enabled
        starts the proxy with a warning naming the table and the file.
        """
        path = self.write('[filter.headers]\nrequest_remove = ["X-A"]\n')
        with capturedLogs() as events:
            parse("--config", path)
        warnings = [formatEvent(e) for e in events if e["log_level"] == LogLevel.warn]
        self.assertEqual(len(warnings), 1, warnings)
        self.assertIn(path, warnings[0])
        self.assertIn("[filter.headers]", warnings[0])
        self.assertIn("not in [filters] enabled", warnings[0])
        path = self.write(
            '[filters]\nenabled = ["headers"]\n[filter.headers]\nrequest_remove = ["X-A"]\n',
            "enabled.toml",
        )
        with capturedLogs() as events:
            parse("--config", path)
        self.assertEqual([e for e in events if e["log_level"] == LogLevel.warn], [])

    def test_badFilterTable(self) -> None:
        """
        A filter table the filter refuses stops the start, naming the file
        and the table.
        """
        path = self.write(
            '[filters]\nenabled = []\n[access]\nallowed_clients = ["not an address"]\n'
        )
        error = self.assertRaises(SystemExit, parse, "--config", path)
        self.assertIn(path, str(error.code))
        self.assertIn("allowed_clients", str(error.code))


def twistd(*args: str, cwd: str) -> subprocess.CompletedProcess[str]:
    """
    Run C{twistd} with the checkout on the path.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env["PYTHONPATH"] = str(REPO_ROOT)
    return subprocess.run(
        [sys.executable, "-c", "from twisted.scripts.twistd import run; run()", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )


class TwistdTests(FileMixin, SynchronousTestCase):
    """
    C{twistd webproxy --config} with a bad file stops before starting
    anything, with one line on standard error.
    """

    def assertStops(self, text: str, *expected: str) -> None:
        path = self.write(text)
        directory = os.path.dirname(path)
        result = twistd("-n", "--pidfile=", "webproxy", "--config", path, cwd=directory)
        self.assertNotEqual(result.returncode, 0)
        self.assertNotIn("Traceback", result.stderr + result.stdout)
        lines = result.stderr.strip().splitlines()
        self.assertEqual(len(lines), 1, result.stderr)
        self.assertIn(path, lines[0])
        for part in expected:
            self.assertIn(part, lines[0])
        self.assertFalse(os.path.exists(os.path.join(directory, "twistd.log")))

    def test_wrongType(self) -> None:
        """
        A wrong type is named on one line.
        """
        self.assertStops('[server]\nport = "x"\n', "[server] port", "expected")

    def test_unknownKey(self) -> None:
        """
        An unknown key is named on one line.
        """
        self.assertStops("[timeouts]\nconect = 1\n", "[timeouts] conect")

    def test_invalidToml(self) -> None:
        """
        A syntax error is reported on one line.
        """
        self.assertStops("[server\n", "not valid TOML")

    def test_unknownFilter(self) -> None:
        """
        An enabled filter nobody provides is named on one line.
        """
        self.assertStops('[filters]\nenabled = ["nosuch"]\n', "'nosuch'")

    def test_badEndpoint(self) -> None:
        """
        A C{listen} description Twisted cannot parse is named on one line
        before anything starts.
        """
        self.assertStops(
            '[server]\nlisten = ["tcp:notaport"]\n', "[server] listen", "tcp:notaport"
        )

# -*- test-case-name: tests.test_tap -*-
"""
Tests for L{proxyapp.tap}: command-line options, listen descriptions and
the service L{makeService} builds.
"""

from __future__ import annotations

import os
import tempfile
import warnings

from twisted.application.service import IService, MultiService
from twisted.internet.testing import MemoryReactorClock
from twisted.python import usage
from twisted.trial.unittest import SynchronousTestCase

from proxyapp.config import ConfigError, Settings
from proxyapp.protocol import ProxyFactory
from proxyapp.service import ProxyService
from proxyapp.tap import Options, listenDescriptions, makeService, reloadSettings
from tests import temporaryDirectory
from tests.certificates import certificatePEM, keyPEM, makeCertificate


def parse(*argv: str) -> Options:
    """
    @return: L{Options} that parsed C{argv}.
    """
    options = Options()
    options.parseOptions(list(argv))
    return options


def selfSignedPEM() -> bytes:
    """
    @return: a key and a self-signed certificate for it, in PEM.
    """
    key, certificate = makeCertificate()
    return keyPEM(key) + certificatePEM(certificate)


class OptionsTests(SynchronousTestCase):
    """
    L{Options} parses argv lists into L{Settings}.
    """

    def test_defaults(self) -> None:
        """
        Without arguments the settings are L{Settings}' defaults, CONNECT
        reaching port 443 only.
        """
        options = parse("--via-pseudonym", "p")
        settings = options["settings"]
        self.assertIsNone(options["port"])
        self.assertEqual(settings.port, Settings().port)
        self.assertEqual(settings.interface, Settings().interface)
        self.assertEqual(settings.listen, [])
        self.assertIn(443, settings.connectPorts)
        self.assertNotIn(80, settings.connectPorts)

    def test_emptyConfigPath(self) -> None:
        """
        C{--config=} (an empty path) says so, in one line (it was
        C{webproxy: : cannot read...}).
        """
        error = self.assertRaises(SystemExit, parse, "--config=")
        self.assertEqual(str(error), "webproxy: --config: an empty path names no file")

    def test_relativePathsAfterRundir(self) -> None:
        """
        Relative paths (the configuration file, the password file, block
        lists, the access log) keep meaning the start directory's at a
        reload after twistd has changed to C{--rundir}: the reload failed
        with "No such file or directory" before.  They are made absolute
        at the start already: the password file is read again while the
        proxy runs (and refused every user a second after the start).
        """
        start = temporaryDirectory(self)
        elsewhere = temporaryDirectory(self)
        with open(os.path.join(start, "blocked.txt"), "w") as f:
            f.write("blocked.example\n")
        with open(os.path.join(start, "htpasswd"), "w") as f:
            f.write("# nobody yet\n")
        with open(os.path.join(start, "rel.toml"), "w") as f:
            f.write(
                '[access]\nblocked_domains_files = ["blocked.txt"]\n'
                '[auth]\nhtpasswd = "htpasswd"\n'
                '[log]\naccess_log = "logs/access.log"\n'
            )
        here = os.getcwd()
        self.addCleanup(os.chdir, here)
        os.chdir(start)
        options = parse("--config", "rel.toml")
        self.assertEqual(options["settings"].htpasswd, os.path.join(start, "htpasswd"))
        os.chdir(elsewhere)
        settings, filters = reloadSettings(options)
        self.assertEqual(settings.configFile, "rel.toml")
        self.assertEqual(settings.htpasswd, os.path.join(start, "htpasswd"))
        self.assertEqual(
            settings.blockedDomainsFiles, [os.path.join(start, "blocked.txt")]
        )
        self.assertEqual(settings.accessLog, os.path.join(start, "logs", "access.log"))
        self.assertEqual([f.name for f in filters], ["access", "auth"])
        # The same for [filter.auth] htpasswd, where auth is enabled by name.
        with open(os.path.join(start, "rel.toml"), "w") as f:
            f.write(
                '[filters]\nenabled = ["auth"]\n'
                '[filter.auth]\nhtpasswd = "htpasswd"\n'
            )
        settings, filters = reloadSettings(options)
        self.assertEqual(
            settings.filterTables["auth"]["htpasswd"],
            os.path.join(start, "htpasswd"),
        )
        self.assertEqual([f.name for f in filters], ["access", "auth"])

    def test_port(self) -> None:
        """
        C{--port} is parsed as an integer.
        """
        options = parse("--port", "12345")
        self.assertEqual(options["port"], 12345)
        self.assertEqual(options["settings"].port, 12345)

    def test_shortPort(self) -> None:
        """
        C{-p} is C{--port}.
        """
        self.assertEqual(parse("-p", "8123")["settings"].port, 8123)

    def test_numericOptions(self) -> None:
        """
        Limits and timeouts reach the settings with their types.
        """
        settings = parse(
            "--max-headers",
            "7",
            "--max-body-bytes",
            "1000",
            "--connect-timeout",
            "2.5",
            "--pool-size",
            "0",
            "--via-pseudonym",
            "edge-1",
        )["settings"]
        self.assertEqual(settings.maxHeaders, 7)
        self.assertEqual(settings.maxBodyBytes, 1000)
        self.assertEqual(settings.connectTimeout, 2.5)
        self.assertEqual(settings.poolSize, 0)
        self.assertEqual(settings.viaPseudonym, "edge-1")

    def test_listenRepeatable(self) -> None:
        """
        C{--listen} may be given several times and keeps its order.
        """
        options = parse(
            "--listen",
            "tcp:1234",
            "--listen",
            "unix:/tmp/proxy.sock",
            "--listen",
            "tcp6:1234",
        )
        self.assertEqual(
            options["settings"].listen,
            ["tcp:1234", "unix:/tmp/proxy.sock", "tcp6:1234"],
        )

    def test_connectPortRepeatable(self) -> None:
        """
        C{--connect-port} accumulates single ports and ranges, replacing the
        default.
        """
        options = parse("--connect-port", "8443", "--connect-port", "9000-9010")
        self.assertEqual(options["connect-ports"], ["8443", "9000-9010"])
        ports = options["settings"].connectPorts
        self.assertIn(8443, ports)
        self.assertIn(9005, ports)
        self.assertNotIn(443, ports)
        self.assertNotIn(9011, ports)

    def test_connectPortAny(self) -> None:
        """
        C{--connect-port *} allows every port.
        """
        ports = parse("--connect-port", "*")["settings"].connectPorts
        self.assertIn(1, ports)
        self.assertIn(65535, ports)

    def test_listenOnlyDropsDefaultPort(self) -> None:
        """
        With only C{--listen} the settings say not to listen on C{--port}.
        """
        self.assertFalse(parse("--listen", "tcp:9001")["settings"].listenOnPort)

    def test_portWithListenKeepsPort(self) -> None:
        """
        C{--port} with C{--listen} listens on both.
        """
        settings = parse("--port", "8123", "--listen", "tcp:9001")["settings"]
        self.assertTrue(settings.listenOnPort)
        self.assertEqual(
            listenDescriptions(settings), ["tcp:8123:interface=127.0.0.1", "tcp:9001"]
        )

    def writeConfig(self, text: str) -> str:
        fd, path = tempfile.mkstemp(suffix=".toml")
        with os.fdopen(fd, "w") as f:
            f.write(text)
        self.addCleanup(os.remove, path)
        return path

    def test_configFileRead(self) -> None:
        """
        Values from the C{--config} file reach the settings.
        """
        path = self.writeConfig("[server]\nport = 9000\n[limits]\nmax_headers = 12\n")
        settings = parse("--config", path)["settings"]
        self.assertEqual((settings.port, settings.maxHeaders), (9000, 12))

    def test_commandLineOverridesConfigFile(self) -> None:
        """
        An option given on the command line wins over the file.
        """
        path = self.writeConfig("[server]\nport = 9000\n")
        self.assertEqual(
            parse("--config", path, "--port", "9100")["settings"].port, 9100
        )

    def assertUsageError(self, argv: list[str], option: str) -> None:
        error = self.assertRaises(usage.UsageError, parse, *argv)
        self.assertIn(option, str(error))

    def test_portNotInteger(self) -> None:
        """
        C{--port abc} is a usage error naming the option.
        """
        self.assertUsageError(["--port", "abc"], "port")

    def test_timeoutNotNumber(self) -> None:
        """
        C{--upstream-timeout soon} is a usage error naming the option.
        """
        self.assertUsageError(["--upstream-timeout", "soon"], "upstream-timeout")

    def test_portOutOfRange(self) -> None:
        """
        C{--port 70000} is a usage error naming the option.
        """
        self.assertUsageError(["--port", "70000"], "--port")

    def test_connectPortOutOfRange(self) -> None:
        """
        C{--connect-port 70000} is a usage error naming the option.
        """
        self.assertUsageError(["--connect-port", "70000"], "--connect-port")

    def test_connectPortReversedRange(self) -> None:
        """
        C{--connect-port 5-2} is a usage error naming the option.
        """
        self.assertUsageError(["--connect-port", "5-2"], "--connect-port")

    def test_connectPortGarbage(self) -> None:
        """
        C{--connect-port https} is a usage error naming the option.
        """
        self.assertUsageError(["--connect-port", "https"], "--connect-port")

    def test_maxHeadersZero(self) -> None:
        """
        C{--max-headers 0} is a usage error naming the option.
        """
        self.assertUsageError(["--max-headers", "0"], "--max-headers")

    def test_negativeBodyLimit(self) -> None:
        """
        C{--max-body-bytes -1} is a usage error naming the option.
        """
        self.assertUsageError(["--max-body-bytes", "-1"], "--max-body-bytes")

    def test_logFormat(self) -> None:
        """
        C{--log-format xml} is a usage error naming the option.
        """
        self.assertUsageError(["--log-format", "xml"], "--log-format")

    def test_listenNotDescription(self) -> None:
        """
        C{--listen 8080} (no endpoint type) is a usage error naming the
        option.
        """
        self.assertUsageError(["--listen", "8080"], "--listen")

    def test_timeoutNotFinite(self) -> None:
        """
        C{--drain-timeout nan} (and C{inf}) is a usage error naming the
        option: the drain would never end.
        """
        self.assertUsageError(["--drain-timeout", "nan"], "--drain-timeout")
        self.assertUsageError(["--connect-timeout", "inf"], "--connect-timeout")

    def test_listenAnyParserError(self) -> None:
        """
        Whatever an endpoint parser raises is a usage error naming the
        option, not a traceback: a missing certificate file (C{ssl:}), a
        dangling backslash, a systemd descriptor that is not there.
        """
        for description in (
            "ssl:19443:privateKey=/nonexistent/key.pem",
            "tcp:8080:interface=x\\",
            "systemd:domain=INET:index=0",
        ):
            self.assertUsageError(["--listen", description], "--listen")

    def test_listenMissingDHParameters(self) -> None:
        """
        A TLS listener whose C{dhParameters} file is missing is a usage
        error naming the option: that file is read only at the first
        handshake, which would then fail for every client.
        """
        pem = os.path.join(temporaryDirectory(self), "server.pem")
        with open(pem, "wb") as f:
            f.write(selfSignedPEM())
        prefix = f"ssl:19443:privateKey={pem}"
        with warnings.catch_warnings():
            # Twisted's ssl: endpoint hands pyOpenSSL the X509 and PKey
            # objects it deprecates; not ours to change.
            warnings.simplefilter("ignore", DeprecationWarning)
            parse("--listen", prefix)
            self.assertUsageError(
                ["--listen", prefix + ":dhParameters=/nonexistent/dh.pem"], "--listen"
            )

    def test_interfaceChecked(self) -> None:
        """
        The C{--interface} that C{--port} listens on is checked the same
        way.
        """
        self.assertUsageError(["--interface", "x\\"], "--interface")

    def test_viaPseudonymWithSpace(self) -> None:
        """
        A C{--via-pseudonym} with a space is a usage error naming the option.
        """
        self.assertUsageError(["--via-pseudonym", "my proxy"], "--via-pseudonym")

    def test_defaultViaPseudonymIsToken(self) -> None:
        """
        Without C{--via-pseudonym} the proxy names itself with one token that
        differs between runs.
        """
        first = parse()["settings"].viaPseudonym
        second = parse()["settings"].viaPseudonym
        self.assertNotEqual(first, second)
        for name in (first, second):
            self.assertTrue(name)
            self.assertFalse(any(c in name for c in " ,\t()"))


class UpstreamCaFileTests(SynchronousTestCase):
    """
    C{--upstream-ca-file} and C{[tls] upstream_ca_file} are read at start
    (and at a reload), so a bad file stops the start with one line.
    """

    def setUp(self) -> None:
        self.directory = temporaryDirectory(self)
        here = os.getcwd()
        self.addCleanup(os.chdir, here)
        os.chdir(self.directory)
        with open("ca.pem", "wb") as f:
            f.write(certificatePEM(makeCertificate("internal CA")[1]))

    def test_option(self) -> None:
        settings = parse("--upstream-ca-file", "ca.pem")["settings"]
        self.assertEqual(
            settings.upstreamCaFile, os.path.join(self.directory, "ca.pem")
        )
        self.assertEqual(len(settings.upstreamAuthorities), 1)

    def test_defaultNone(self) -> None:
        settings = parse()["settings"]
        self.assertIsNone(settings.upstreamCaFile)
        self.assertEqual(settings.upstreamAuthorities, ())

    def test_fileRelativeToStart(self) -> None:
        """
        In the configuration file a relative path is the start directory's,
        also at a reload made elsewhere.
        """
        with open("webproxy.toml", "w") as f:
            f.write('[tls]\nupstream_ca_file = "ca.pem"\n')
        options = parse("--config", "webproxy.toml")
        path = os.path.join(self.directory, "ca.pem")
        self.assertEqual(options["settings"].upstreamCaFile, path)
        os.chdir(temporaryDirectory(self))
        settings, _ = reloadSettings(options)
        self.assertEqual(settings.upstreamCaFile, path)
        self.assertEqual(len(settings.upstreamAuthorities), 1)

    def test_missingOption(self) -> None:
        error = self.assertRaises(SystemExit, parse, "--upstream-ca-file", "nosuch.pem")
        path = os.path.join(self.directory, "nosuch.pem")
        self.assertEqual(
            str(error),
            f"webproxy: --upstream-ca-file: cannot read {path!r}:"
            " No such file or directory",
        )

    def test_notCertificatesInFile(self) -> None:
        """
        A file that holds no certificate stops the start, naming the
        configuration file and key.
        """
        with open("key.pem", "wb") as f:
            f.write(keyPEM(makeCertificate()[0]))
        with open("webproxy.toml", "w") as f:
            f.write('[tls]\nupstream_ca_file = "key.pem"\n')
        error = self.assertRaises(SystemExit, parse, "--config", "webproxy.toml")
        path = os.path.join(self.directory, "key.pem")
        self.assertEqual(
            str(error),
            f"webproxy: webproxy.toml: [tls] upstream_ca_file: {path!r} holds no"
            " PEM certificate",
        )

    def test_reloadKeepsRunning(self) -> None:
        """
        A file that went bad by a reload is a L{ConfigError}, which the
        service logs while keeping the running configuration.
        """
        options = parse("--upstream-ca-file", "ca.pem")
        os.remove("ca.pem")
        self.assertRaises(ConfigError, reloadSettings, options)


class ListenDescriptionsTests(SynchronousTestCase):
    """
    L{listenDescriptions} turns C{--port}, C{--interface} and C{--listen}
    into endpoint descriptions.
    """

    def test_portAndInterface(self) -> None:
        """
        C{--port} listens on C{--interface}.
        """
        settings = Settings(port=8123, interface="0.0.0.0")
        self.assertEqual(listenDescriptions(settings), ["tcp:8123:interface=0.0.0.0"])

    def test_ipv6InterfaceEscaped(self) -> None:
        """
        The colons of an IPv6 interface are escaped for the description.
        """
        settings = Settings(port=8123, interface="::1")
        self.assertEqual(listenDescriptions(settings), ["tcp:8123:interface=\\:\\:1"])

    def test_listenOnly(self) -> None:
        """
        With only C{--listen}, the default port is not listened on.
        """
        settings = Settings(listen=["unix:/tmp/p.sock"], listenOnPort=False)
        self.assertEqual(listenDescriptions(settings), ["unix:/tmp/p.sock"])

    def test_portAndListen(self) -> None:
        """
        C{--port} and C{--listen} together listen on both, port first.
        """
        settings = Settings(port=8123, listen=["tcp6:9000"])
        self.assertEqual(
            listenDescriptions(settings), ["tcp:8123:interface=127.0.0.1", "tcp6:9000"]
        )

    def test_neither(self) -> None:
        """
        With neither option the default port on the default interface is
        used.
        """
        self.assertEqual(
            listenDescriptions(Settings()), ["tcp:8080:interface=127.0.0.1"]
        )


class MakeServiceTests(SynchronousTestCase):
    """
    L{makeService} builds a L{MultiService} whose proxy listens on every
    description.
    """

    def build(self, *argv: str) -> tuple[MultiService, MemoryReactorClock]:
        reactor = MemoryReactorClock()
        return makeService(parse("--access-log", "off", *argv), reactor), reactor

    def test_accessLogErrorNamesWhere(self) -> None:
        """
        An access log that cannot be opened stops the start with one line
        naming where its path was set: the option, or the file and key.
        """
        directory = temporaryDirectory(self)
        error = self.assertRaises(
            SystemExit,
            makeService,
            parse("--access-log", directory),
            MemoryReactorClock(),
        )
        self.assertEqual(
            str(error),
            f"webproxy: --access-log: cannot open access log {directory!r}: Is a directory",
        )
        config = os.path.join(directory, "webproxy.toml")
        with open(config, "w") as f:
            f.write(f"[log]\naccess_log = {directory!r}\n")
        error = self.assertRaises(
            SystemExit, makeService, parse("--config", config), MemoryReactorClock()
        )
        self.assertTrue(
            str(error).startswith(f"webproxy: {config}: [log] access_log: cannot open"),
            str(error),
        )

    def test_multiService(self) -> None:
        """
        The service is a L{MultiService} with a C{proxy} child.
        """
        top, _ = self.build("--port", "8123")
        self.assertIsInstance(top, MultiService)
        self.assertTrue(IService.providedBy(top))
        proxy = top.getServiceNamed("proxy")
        self.assertIsInstance(proxy, ProxyService)
        self.assertEqual(proxy.descriptions, ["tcp:8123:interface=127.0.0.1"])

    def test_listensOnEveryDescription(self) -> None:
        """
        Starting the service listens on C{--port} and every C{--listen} with
        one L{ProxyFactory}.
        """
        top, reactor = self.build(
            "--port",
            "8123",
            "--interface",
            "127.0.0.2",
            "--listen",
            "tcp:9001:interface=127.0.0.3",
            "--listen",
            "tcp6:9002:interface=\\:\\:1",
            "--listen",
            "unix:/tmp/webproxy-test.sock",
            "--via-pseudonym",
            "t",
        )
        top.startService()
        self.addCleanup(top.stopService)
        self.assertEqual(
            [(port, interface) for port, _, _, interface in reactor.tcpServers],
            [(8123, "127.0.0.2"), (9001, "127.0.0.3"), (9002, "::1")],
        )
        self.assertEqual(
            [address for address, _, _, _, _ in reactor.unixServers],
            ["/tmp/webproxy-test.sock"],
        )
        factories = {id(entry[1]) for entry in reactor.tcpServers + reactor.unixServers}
        self.assertEqual(len(factories), 1)
        factory = reactor.tcpServers[0][1]
        self.assertIsInstance(factory, ProxyFactory)
        self.assertIs(factory.reactor, reactor)
        self.assertEqual(factory.settings.viaPseudonym, "t")

    def test_listenOnlyService(self) -> None:
        """
        With only C{--listen}, the service does not listen on the default
        port.
        """
        top, reactor = self.build("--listen", "tcp:9001")
        top.startService()
        self.addCleanup(top.stopService)
        self.assertEqual([port for port, _, _, _ in reactor.tcpServers], [9001])

    def test_stopServiceCompletes(self) -> None:
        """
        Stopping a service with no connections completes at once.
        """
        top, _ = self.build("--port", "8123")
        top.startService()
        self.successResultOf(top.stopService())

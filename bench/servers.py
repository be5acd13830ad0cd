"""
The processes the benchmark starts: the nginx origin and the proxies under test.

Each runs from its own directory under the benchmark's temporary directory, with
its own configuration, pid and log files, on ports chosen free on 127.0.0.1,
pinned to a CPU with taskset, in its own session so that L{ServerProcess.stop}
can end it and anything it spawned.
"""

import os
import pwd
import shlex
import signal
import socket
import subprocess
import time

# Proxy variables from the environment must never redirect the benchmark's
# own clients (curl honours them).
_PROXY_VARIABLES = ("http_proxy", "https_proxy", "all_proxy", "no_proxy")


def cleanEnvironment(extra: dict[str, str] | None = None) -> dict[str, str]:
    """
    @return: a copy of the environment without proxy variables, updated
        with C{extra}.
    """
    env = {
        key: value
        for key, value in os.environ.items()
        if key.lower() not in _PROXY_VARIABLES
    }
    env.update(extra or {})
    return env


def freePort() -> int:
    """
    @return: a TCP port on 127.0.0.1 that nothing listened on a moment ago.
    """
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def tailOf(path: str, lines: int = 15) -> str:
    """
    @return: the last C{lines} lines of the file at C{path}, or a note that
        it could not be read.
    """
    try:
        with open(path, "rb") as f:
            f.seek(0, os.SEEK_END)
            f.seek(max(f.tell() - 8192, 0))
            text = f.read().decode("utf-8", "replace")
    except OSError as e:
        return f"({path}: {e.strerror})"
    return "\n".join(text.splitlines()[-lines:])


def pinned(cpu: int | None, argv: list[str]) -> list[str]:
    """
    @return: C{argv} run under C{taskset -c cpu}, or unchanged if C{cpu} is
        L{None}.
    """
    return argv if cpu is None else ["taskset", "-c", str(cpu), *argv]


class ServerProcess:
    """
    A long-running child process with its output in a log file.

    @ivar name: a label for reports.
    @ivar logPaths: files whose tails explain a failure, the process's own
        output first.
    """

    def __init__(
        self,
        name: str,
        argv: list[str],
        outputPath: str,
        cwd: str,
        extraLogs: tuple[str, ...] = (),
        environment: dict[str, str] | None = None,
    ) -> None:
        self.name = name
        self.environment = environment
        self.argv = argv
        self.logPaths = [outputPath, *extraLogs]
        self.cwd = cwd
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> "ServerProcess":
        with open(self.logPaths[0], "ab") as output:
            self.process = subprocess.Popen(
                self.argv,
                stdin=subprocess.DEVNULL,
                stdout=output,
                stderr=subprocess.STDOUT,
                cwd=self.cwd,
                env=cleanEnvironment(self.environment),
                start_new_session=True,
            )
        return self

    @property
    def pid(self) -> int:
        assert self.process is not None
        return self.process.pid

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def explain(self) -> str:
        """
        @return: the exit status (if it exited) and the tails of its logs.
        """
        parts = [f"command: {shlex.join(self.argv)}"]
        if self.process is not None and self.process.poll() is not None:
            parts.append(f"exited with status {self.process.returncode}")
        for path in self.logPaths:
            parts.append(f"--- {os.path.basename(path)} (tail) ---\n{tailOf(path)}")
        return "\n".join(parts)

    def stop(self, timeout: float = 5.0) -> None:
        """
        End the process and everything in its session: SIGTERM, then SIGKILL
        after C{timeout} seconds.
        """
        if self.process is None:
            return
        for sig, wait in ((signal.SIGTERM, timeout), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(self.process.pid, sig)
            except ProcessLookupError:
                pass
            try:
                self.process.wait(wait)
            except subprocess.TimeoutExpired:
                continue
            # The leader is gone; end anything it left in its session.
            try:
                os.killpg(self.process.pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
            return


def waitForPort(server: ServerProcess, port: int, timeout: float = 20.0) -> None:
    """
    Wait until something accepts connections on 127.0.0.1:C{port}.

    @raise RuntimeError: if C{server} exits or C{timeout} seconds pass first.
    """
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not server.running():
            raise RuntimeError(f"{server.name} exited during startup")
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError(f"{server.name} did not listen on port {port} in {timeout} s")


def writeFile(path: str, text: str) -> str:
    with open(path, "w") as f:
        f.write(text)
    return path


def chownTo(path: str, user: str) -> None:
    """
    Give C{path} to C{user} when running as root, for servers that drop
    privileges and must still write their logs and pid files there.
    """
    if os.geteuid() != 0:
        return
    entry = pwd.getpwnam(user)
    os.chown(path, entry.pw_uid, entry.pw_gid)


def startNginx(
    nginx: str,
    directory: str,
    docroot: str,
    httpPort: int,
    tlsPort: int,
    certificate: str,
    key: str,
    maxConnections: int,
    cpu: int | None,
) -> ServerProcess:
    """
    Start nginx as a single foreground process (no master, no daemon) serving
    C{docroot} over HTTP on C{httpPort} and HTTPS on C{tlsPort}.
    """
    os.makedirs(directory, exist_ok=True)
    conf = writeFile(
        os.path.join(directory, "nginx.conf"),
        f"""\
daemon off;
master_process off;
worker_processes 1;
worker_rlimit_nofile {maxConnections * 2 + 1024};
pid {directory}/nginx.pid;
error_log {directory}/error.log warn;
events {{
    worker_connections {maxConnections + 1024};
    use epoll;
    multi_accept on;
}}
http {{
    access_log off;
    default_type application/octet-stream;
    types {{ }}
    sendfile on;
    tcp_nopush on;
    tcp_nodelay on;
    keepalive_requests 1000000;
    keepalive_timeout 300s;
    client_body_temp_path {directory}/client_body;
    proxy_temp_path {directory}/proxy;
    fastcgi_temp_path {directory}/fastcgi;
    uwsgi_temp_path {directory}/uwsgi;
    scgi_temp_path {directory}/scgi;
    server {{
        listen 127.0.0.1:{httpPort} backlog=4096;
        root {docroot};
    }}
    server {{
        listen 127.0.0.1:{tlsPort} ssl backlog=4096;
        ssl_certificate {certificate};
        ssl_certificate_key {key};
        ssl_session_cache shared:tls:1m;
        root {docroot};
    }}
}}
""",
    )
    argv = pinned(
        cpu, [nginx, "-p", directory, "-e", f"{directory}/error.log", "-c", conf]
    )
    return ServerProcess(
        "nginx",
        argv,
        os.path.join(directory, "output.log"),
        directory,
        (os.path.join(directory, "error.log"),),
    ).start()


def startSquid(
    squid: str,
    directory: str,
    port: int,
    tlsPort: int,
    maxConnections: int,
    accessLog: str | None,
    cpu: int | None,
) -> ServerProcess:
    """
    Start Squid in the foreground (C{-N}), one process, caching nothing,
    allowing CONNECT only to C{tlsPort}.

    @param accessLog: a file for a combined-format access log, or L{None}
        for none.
    """
    os.makedirs(directory, exist_ok=True)
    # Started as root, Squid switches to its effective user (proxy on
    # Debian) and must still write its logs here.
    if os.geteuid() == 0:
        chownTo(directory, "proxy")
    log = f"stdio:{accessLog} combined" if accessLog else "none"
    conf = writeFile(
        os.path.join(directory, "squid.conf"),
        f"""\
http_port 127.0.0.1:{port}
workers 1
cache deny all
cache_mem 8 MB
access_log {log}
cache_store_log none
cache_log {directory}/cache.log
logfile_rotate 0
pid_filename {directory}/squid.pid
coredump_dir {directory}
netdb_filename none
max_filedescriptors {maxConnections * 2 + 1024}
acl SSL_ports port {tlsPort}
acl CONNECT method CONNECT
http_access deny CONNECT !SSL_ports
http_access allow localhost
http_access deny all
visible_hostname localhost
dns_nameservers 127.0.0.1
pinger_enable off
icp_port 0
shutdown_lifetime 0 seconds
""",
    )
    argv = pinned(cpu, [squid, "-N", "-f", conf])
    return ServerProcess(
        "squid",
        argv,
        os.path.join(directory, "output.log"),
        directory,
        (os.path.join(directory, "cache.log"),),
    ).start()


def startTinyproxy(
    tinyproxy: str,
    directory: str,
    port: int,
    tlsPort: int,
    maxConnections: int,
    accessLog: str | None,
    cpu: int | None,
) -> ServerProcess:
    """
    Start tinyproxy in the foreground (C{-d}) allowing 127.0.0.1 and CONNECT
    only to C{tlsPort}.

    @param accessLog: a file for tinyproxy's per-connection log (level
        Connect, the nearest it has to an access log), or L{None} for only
        critical messages on its output.
    """
    os.makedirs(directory, exist_ok=True)
    user = "nobody"
    if os.geteuid() == 0:
        chownTo(directory, user)
    logging = (
        f'LogFile "{accessLog}"\nLogLevel Connect\n'
        if accessLog
        else "LogLevel Critical\n"
    )
    identity = f"User {user}\nGroup nogroup\n" if os.geteuid() == 0 else ""
    conf = writeFile(
        os.path.join(directory, "tinyproxy.conf"),
        f"""\
Port {port}
Listen 127.0.0.1
Timeout 600
MaxClients {maxConnections + 1024}
Allow 127.0.0.1
ConnectPort {tlsPort}
DisableViaHeader Yes
PidFile "{directory}/tinyproxy.pid"
{logging}{identity}""",
    )
    argv = pinned(cpu, [tinyproxy, "-d", "-c", conf])
    extra = (accessLog,) if accessLog else ()
    return ServerProcess(
        "tinyproxy", argv, os.path.join(directory, "output.log"), directory, extra
    ).start()


# The proxy under test, run by twistd in the foreground.  twistd has no
# "python -m" entry point, hence the -c.
WEBPROXY_COMMAND = (
    "{python} -c 'from twisted.scripts.twistd import run; run()' "
    "-n --pidfile= webproxy --port {port} --interface 127.0.0.1 "
    "--connect-port {tls_port} {log_args}"
)


def startWebproxy(
    commandTemplate: str,
    python: str,
    sourceTree: str,
    directory: str,
    port: int,
    tlsPort: int,
    accessLog: str | None,
    cpu: int | None,
) -> ServerProcess:
    """
    Start webproxy from C{commandTemplate} (see L{WEBPROXY_COMMAND}).

    @param sourceTree: put first on C{PYTHONPATH}, so the checkout's own
        C{proxyapp} and C{twisted/plugins/webproxy_plugin.py} are what runs
        (an editable install alone does not expose the twistd plugin).

    @param accessLog: a file for a combined-format access log, or L{None}
        for C{--access-log off}.
    """
    os.makedirs(directory, exist_ok=True)
    logArgs = (
        f"--access-log {shlex.quote(accessLog)} --log-format combined"
        if accessLog
        else "--access-log off"
    )
    command = commandTemplate.format(
        python=shlex.quote(python), port=port, tls_port=tlsPort, log_args=logArgs
    )
    path = os.pathsep.join(filter(None, [sourceTree, os.environ.get("PYTHONPATH")]))
    return ServerProcess(
        "webproxy",
        pinned(cpu, shlex.split(command)),
        os.path.join(directory, "output.log"),
        directory,
        environment={"PYTHONPATH": path},
    ).start()

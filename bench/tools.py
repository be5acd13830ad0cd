"""
Finding (or installing with apt-get) the programs the benchmark drives, and
describing the machine it ran on.
"""

import os
import platform
import shutil
import subprocess
import sys

# Program name -> Debian package that provides it.
PACKAGES = {
    "nginx": "nginx",
    "wrk": "wrk",
    "curl": "curl",
    "openssl": "openssl",
    "taskset": "util-linux",
    "squid": "squid",
    "tinyproxy": "tinyproxy",
}

_SEARCH_PATH = os.pathsep.join(
    [os.environ.get("PATH", ""), "/usr/sbin", "/usr/local/sbin", "/sbin"]
)

# Stops apt from starting the system services of the packages it installs
# (nginx on port 80, squid on 3128); removed again afterwards.
_POLICY_RC_D = "/usr/sbin/policy-rc.d"


def which(program: str) -> str | None:
    return shutil.which(program, path=_SEARCH_PATH)


def findTools(programs: list[str], install: bool) -> dict[str, str]:
    """
    Locate C{programs}, installing the missing ones with apt-get (after one
    C{apt-get update}) when C{install} is true and we are root.

    @return: program name -> absolute path.
    @raise SystemExit: if a program is still missing.
    """
    missing = [p for p in programs if which(p) is None]
    if missing and install and os.geteuid() == 0 and which("apt-get"):
        packages = sorted({PACKAGES[p] for p in missing})
        print(f"# installing {' '.join(packages)} with apt-get", file=sys.stderr)
        env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
        addedPolicy = False
        if not os.path.exists(_POLICY_RC_D):
            with open(_POLICY_RC_D, "w") as f:
                f.write("#!/bin/sh\nexit 101\n")
            os.chmod(_POLICY_RC_D, 0o755)
            addedPolicy = True
        try:
            subprocess.run(
                ["apt-get", "update", "-q"],
                check=True,
                env=env,
                timeout=600,
                stdout=sys.stderr,
            )
            subprocess.run(
                [
                    "apt-get",
                    "install",
                    "-y",
                    "-q",
                    "--no-install-recommends",
                    *packages,
                ],
                check=True,
                env=env,
                timeout=1200,
                stdout=sys.stderr,
            )
        finally:
            if addedPolicy:
                os.unlink(_POLICY_RC_D)
        missing = [p for p in programs if which(p) is None]
    if missing:
        raise SystemExit(
            f"missing programs: {', '.join(missing)} (Debian packages: "
            f"{' '.join(sorted({PACKAGES[p] for p in missing}))}); "
            "install them or run as root without --no-install"
        )
    return {p: which(p) for p in programs}  # type: ignore[misc]


def _firstLine(argv: list[str], strict: bool = False) -> str:
    """
    @param strict: report a non-zero exit status as unavailable (C{wrk -v}
        exits with 1 after printing its version).
    """
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=30)
    except (OSError, subprocess.TimeoutExpired) as e:
        return f"unknown ({e})"
    lines = (done.stdout + done.stderr).strip().splitlines()
    if strict and done.returncode != 0:
        return f"unavailable ({lines[-1].strip() if lines else done.returncode})"
    return lines[0].strip() if lines else "unknown"


def toolVersions(tools: dict[str, str], python: str) -> dict[str, str]:
    """
    @return: one version line per program, and the Twisted version of the
        Python that runs webproxy.
    """
    flags = {
        "nginx": ["-v"],
        "wrk": ["-v"],
        "curl": ["--version"],
        "openssl": ["version"],
        "squid": ["-v"],
        "tinyproxy": ["-v"],
    }
    versions = {
        name: _firstLine([path, *flags[name]])
        for name, path in tools.items()
        if name in flags
    }
    versions["twisted (webproxy's python)"] = _firstLine(
        [python, "-c", "import twisted; print(twisted.__version__)"], strict=True
    )
    return versions


def machineInfo() -> dict[str, object]:
    """
    @return: CPU model, CPU counts, kernel, Python and loopback TCP settings.
    """
    model = "unknown"
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("model name"):
                    model = line.split(":", 1)[1].strip()
                    break
    except OSError:
        pass
    sysctls = {}
    for name in (
        "net/ipv4/tcp_tw_reuse",
        "net/ipv4/ip_local_port_range",
        "net/core/somaxconn",
        "net/ipv4/tcp_congestion_control",
        "net/core/default_qdisc",
    ):
        try:
            with open(f"/proc/sys/{name}") as f:
                sysctls[name.replace("/", ".")] = " ".join(f.read().split())
        except OSError:
            pass
    memory = "unknown"
    try:
        with open("/proc/meminfo") as f:
            memory = f"{int(f.readline().split()[1]) // 1024} MiB"
    except (OSError, ValueError, IndexError):
        pass
    return {
        "loadavg_at_start": loadAverage(),
        "cpu": model,
        "nproc": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "memory": memory,
        "kernel": f"{platform.system()} {platform.release()}",
        "python": f"{platform.python_implementation()} {platform.python_version()}",
        "sysctl": sysctls,
    }


CONGESTION_CONTROL = "/proc/sys/net/ipv4/tcp_congestion_control"


def congestionControl() -> str:
    """
    @return: the TCP congestion control that new sockets get, or
        C{unknown}.
    """
    try:
        with open(CONGESTION_CONTROL) as f:
            return f.read().strip()
    except OSError:
        return "unknown"


def setCongestionControl(name: str) -> None:
    """
    Make C{name} the TCP congestion control of sockets created from now on,
    machine-wide (root only).

    @raise SystemExit: naming the setting, when the kernel refuses it.
    """
    try:
        with open(CONGESTION_CONTROL, "w") as f:
            f.write(name)
    except OSError as e:
        available = "unknown"
        try:
            with open("/proc/sys/net/ipv4/tcp_available_congestion_control") as f:
                available = f.read().strip()
        except OSError:
            pass
        raise SystemExit(
            f"--tcp-congestion {name}: the kernel refused it for "
            f"net.ipv4.tcp_congestion_control ({e.strerror}); setting it needs "
            f"root, and the kernel offers: {available}"
        ) from None


def loadAverage() -> str:
    """
    @return: the 1, 5 and 15 minute load averages; other work on the
        machine while the benchmark runs shows here and skews the numbers.
    """
    try:
        with open("/proc/loadavg") as f:
            return " ".join(f.read().split()[:3])
    except OSError:
        return "unknown"


def gitRevision(directory: str) -> str:
    """
    @return: the commit checked out in C{directory} (with "+dirty" if the
        work tree has changes), or "unknown".
    """
    try:
        head = subprocess.run(
            ["git", "-C", directory, "rev-parse", "--short", "HEAD"],
            capture_output=True,
            text=True,
            timeout=30,
        )
        dirty = subprocess.run(
            ["git", "-C", directory, "status", "--porcelain", "--untracked-files=no"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    if head.returncode != 0:
        return "unknown"
    return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")

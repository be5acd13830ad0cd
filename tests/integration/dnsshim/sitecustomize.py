"""
Loaded (through PYTHONPATH) into the proxy processes the integration tests
start.  It keeps name resolution on this machine: IP literals (IPv4 in
any form C{inet_aton} takes) and C{localhost} resolve as usual, every
other name fails the way an unknown name does (C{EAI_NONAME}) without a query leaving the host.  So
C{http://nonexistent.invalid/} exercises the proxy's real resolution-failure
path while the tests only ever talk to 127.0.0.1 and ::1.
"""

import ipaddress
import socket

_LOCAL = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _allowed(host):
    if host is None:
        return True
    if isinstance(host, bytes):
        host = host.decode("ascii", "replace")
    host = host.rstrip(".").lower()
    if host in _LOCAL or host == "":
        return True
    try:
        ipaddress.ip_address(host.split("%")[0])
        return True
    except ValueError:
        pass
    try:
        # The other numeric IPv4 forms getaddrinfo takes (127.1,
        # 2130706433, 0x7f.1): no query either.
        socket.inet_aton(host)
        return True
    except OSError:
        return False


def _refuse(host):
    raise socket.gaierror(
        socket.EAI_NONAME,
        "Name or service not known (%r: only local names resolve in the integration tests)"
        % (host,),
    )


def _wrap(original):
    def wrapper(host, *args, **kwargs):
        if not _allowed(host):
            _refuse(host)
        return original(host, *args, **kwargs)

    wrapper.__wrapped__ = original
    return wrapper


socket.getaddrinfo = _wrap(socket.getaddrinfo)
socket.gethostbyname = _wrap(socket.gethostbyname)
socket.gethostbyname_ex = _wrap(socket.gethostbyname_ex)

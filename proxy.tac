# -*- python -*-
"""
Run webproxy with C{twistd -ny proxy.tac}.

The service is built by the same C{proxyapp.tap.makeService} that
C{twistd webproxy} uses.  Options come from the environment:
C{WEBPROXY_PORT}, the same as C{--port} (when unset, the configuration
file's port or the default, 8080), and C{WEBPROXY_ARGS}, any further
C{twistd webproxy} options as one shell-quoted string.
"""

import os
import shlex

from twisted.application import service
from twisted.python import usage

from proxyapp import tap

options = tap.Options()
port = os.environ.get("WEBPROXY_PORT")
try:
    options.parseOptions(
        (["--port", port] if port else [])
        + shlex.split(os.environ.get("WEBPROXY_ARGS", ""))
    )
except (usage.UsageError, ValueError) as e:
    # One line, as twistd webproxy gives it (ValueError: WEBPROXY_ARGS
    # that shlex cannot split); SystemExit passes twistd's loader, which
    # would print any other exception with a traceback.
    raise SystemExit(f"webproxy (proxy.tac): {e}")
application = service.Application("webproxy")
tap.makeService(options).setServiceParent(application)

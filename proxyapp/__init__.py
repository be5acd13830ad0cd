"""
webproxy: a streaming, strict HTTP/1.1 forward proxy built on Twisted.

Run it with C{twistd -n webproxy --port 8080}; see C{proxyapp.tap} for the
options and the service construction.
"""

__version__ = "0.1.0"

__all__ = ["__version__"]

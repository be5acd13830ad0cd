"""
Integration tests: the proxy and a test origin as real processes on the
loopback interface.  See conftest.py and support.py.
"""

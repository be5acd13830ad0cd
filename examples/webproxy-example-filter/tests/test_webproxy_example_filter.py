"""
Tests for the example filter, written the way any filter's tests can be:
no sockets, no network, only L{proxyapp.testing}.

Run them with C{python -m pytest tests} or
C{python -m twisted.trial tests/test_webproxy_example_filter.py}
after C{pip install .} (or from this directory, without installing).
"""

from __future__ import annotations

from twisted.plugin import IPlugin
from twisted.trial.unittest import SynchronousTestCase
from zope.interface.verify import verifyObject

from proxyapp.interfaces import IFilterFactory, IRequestFilter, IResponseFilter
from proxyapp.plugins.webproxy_example_filter import factory
from proxyapp.testing import InMemoryProxy, makeRequestHead, makeResponseHead, verifyFilter


class FactoryTests(SynchronousTestCase):
    """
    The plugin object webproxy discovers.
    """

    def test_providesInterfaces(self) -> None:
        """
        The factory provides IPlugin and IFilterFactory, and is called
        C{example}.
        """
        self.assertTrue(verifyObject(IPlugin, factory))
        self.assertTrue(verifyObject(IFilterFactory, factory))
        self.assertEqual(factory.name, "example")

    def test_builtFilterIsValid(self) -> None:
        """
        The filter it builds implements both interfaces it claims.
        """
        provided = verifyFilter(factory.makeFilter({}))
        self.assertEqual(set(provided), {IRequestFilter, IResponseFilter})

    def test_rejectsUnknownKey(self) -> None:
        """
        An unknown key is refused with a message naming it.
        """
        error = self.assertRaises(ValueError, factory.makeFilter, {"greting": "hi"})
        self.assertIn("'greting'", str(error))

    def test_rejectsBadPaths(self) -> None:
        """
        C{blocked_paths} must be a list of paths starting with C{/}.
        """
        error = self.assertRaises(ValueError, factory.makeFilter, {"blocked_paths": "/private"})
        self.assertIn("blocked_paths", str(error))
        self.assertRaises(ValueError, factory.makeFilter, {"blocked_paths": ["private"]})

    def test_rejectsBadGreeting(self) -> None:
        """
        The greeting must be printable ASCII (it becomes a header value).
        """
        error = self.assertRaises(ValueError, factory.makeFilter, {"greeting": "hi\r\nX-Evil: 1"})
        self.assertIn("greeting", str(error))


class FilterTests(SynchronousTestCase):
    """
    The filter's methods, called directly with heads from
    L{proxyapp.testing}.
    """

    def test_greets(self) -> None:
        """
        The response filter sets the configured greeting.
        """
        example = factory.makeFilter({"greeting": "bonjour"})
        response = example.filterResponse(makeRequestHead(), makeResponseHead(200))
        self.assertEqual(response.headers.get(b"x-example-filter"), b"bonjour")

    def test_blocksPrefix(self) -> None:
        """
        A request whose path starts with a blocked prefix gets 403; others
        pass on unchanged.
        """
        example = factory.makeFilter({"blocked_paths": ["/private"]})
        refused = example.filterRequest(makeRequestHead(url=b"http://example.com/private/x"))
        self.assertEqual(refused.head.status, 403)
        request = makeRequestHead(url=b"http://example.com/public")
        self.assertIs(example.filterRequest(request), request)


class TrafficTests(SynchronousTestCase):
    """
    The filter inside a real proxy, in memory: client, proxy, fake origin.
    """

    def test_responseIsGreeted(self) -> None:
        """
        A proxied response carries C{X-Example-Filter: hello} and the
        origin's body.
        """
        proxy = InMemoryProxy([factory.makeFilter({})])
        response = proxy.get("http://example.com/hello")
        self.assertEqual(response.status, 200)
        self.assertEqual(response.headers.get(b"x-example-filter"), b"hello")
        self.assertEqual(response.body, b"hello from example.com")

    def test_blockedPathNeverReachesOrigin(self) -> None:
        """
        A blocked path is answered 403 by the proxy; the origin sees
        nothing.
        """
        proxy = InMemoryProxy([factory.makeFilter({"blocked_paths": ["/private"]})])
        response = proxy.get("http://example.com/private/diary")
        self.assertEqual(response.status, 403)
        self.assertEqual(proxy.originRequests, [])
        self.assertEqual(proxy.get("http://example.com/public").status, 200)
        self.assertEqual([r.head.path for r in proxy.originRequests], [b"/public"])

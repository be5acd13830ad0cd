"""
webproxy's plugin package: filter factories are discovered here with
C{twisted.plugin.getPlugins(IFilterFactory, proxyapp.plugins)}.

Third-party distributions install a module (named after their project, e.g.
C{proxyapp/plugins/acme_filters.py}) into this package's directory in
site-packages; C{pluginPackagePaths} also finds such directories elsewhere
on C{sys.path}.  Nothing else belongs in this file.
"""

from twisted.plugin import pluginPackagePaths

__path__.extend(pluginPackagePaths(__name__))  # type: ignore[name-defined]
__all__: list[str] = []

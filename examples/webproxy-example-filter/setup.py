"""
Installs the example filter into webproxy's plugin package.

The distribution ships one module, C{proxyapp/plugins/webproxy_example_filter.py},
and deliberately no C{proxyapp/__init__.py} or C{proxyapp/plugins/__init__.py}:
those belong to webproxy, and shipping them would overwrite its files.
"""

from setuptools import setup

setup(
    name="webproxy-example-filter",
    version="1.0.0",
    description="An example webproxy filter: greets responses, blocks paths",
    python_requires=">=3.11",
    # A dotted py_modules entry installs the single file into
    # site-packages/proxyapp/plugins/ (setuptools warns that the package's
    # __init__.py is not part of this distribution; that is intended).
    py_modules=["proxyapp.plugins.webproxy_example_filter"],
    install_requires=["webproxy"],
)

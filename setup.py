"""
Installs webproxy: the C{proxyapp} package and its twistd plugin dropin.

C{twisted.plugins} is listed as a package so that C{pip install .} copies
C{twisted/plugins/webproxy_plugin.py} into Twisted's plugin directory; the
project ships no C{__init__.py} there, so it never shadows Twisted's own.
"""

from setuptools import setup

setup(
    name="webproxy",
    version="0.1.0",
    description="A streaming, strict HTTP/1.1 forward proxy built on Twisted",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    python_requires=">=3.11",
    packages=["proxyapp", "proxyapp.filters", "proxyapp.plugins", "twisted.plugins"],
    package_data={"proxyapp": ["py.typed"]},
    install_requires=[
        # twisted[tls] brings pyOpenSSL, service_identity and idna.
        "twisted[tls]>=24.7.0,<27",
        # Connection.set_verify (per-connection host name checks on one shared
        # context, proxyapp/tls.py); Twisted 26 asks for the same.
        "pyopenssl>=25.3.0",
        # htpasswd bcrypt entries ([auth] htpasswd).
        "bcrypt>=4.0",
        "zope.interface>=6.0",
    ],
    extras_require={
        "test": ["pytest>=7", "pytest-timeout>=2", "requests>=2.28", "hypothesis>=6"],
    },
    classifiers=[
        "Framework :: Twisted",
        "Programming Language :: Python :: 3",
        "Topic :: Internet :: Proxy Servers",
    ],
)

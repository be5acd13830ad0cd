"""
webproxy's tests: unit tests here, integration tests in L{tests.integration}.
"""

from __future__ import annotations

import shutil
import tempfile

from twisted.trial.unittest import SynchronousTestCase


def temporaryDirectory(
    case: SynchronousTestCase, prefix: str = "webproxy-test-"
) -> str:
    """
    Make a directory removed after the test.

    Unlike C{TestCase.mktemp}, this never writes under the current
    directory, which is the checkout when pytest runs the tests.

    @param case: the running test.
    @param prefix: the start of the directory's name.

    @return: the directory's absolute path.
    """
    directory = tempfile.mkdtemp(prefix=prefix)
    case.addCleanup(shutil.rmtree, directory, True)
    return directory

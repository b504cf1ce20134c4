"""Status lines that name the skipped test, on every Python.

Parent side only: the result that prints a run's ``-v 2`` lines.
"""

from __future__ import annotations

import sys
from typing import Any

from ..parallel.replay import at_line_start

#: Python 3.12.0 and 3.12.1 skip a test marked with a skip decorator without
#: starting it (no startTest); fixed in 3.12.2.
SKIPS_UNSTARTED = (3, 12) <= sys.version_info[:3] < (3, 12, 2)


class NamedSkips:
    """Mixed into the result class where ``SKIPS_UNSTARTED``: the status line
    of a test skipped before it started names the test, as on every other
    Python.

    There ``TextTestResult`` writes the test's name only if the previous
    status ended its line the way it notes (``_newline``); after an
    "expected failure" it does not, so whether a skipped test was named
    depended on the test before it, which in a parallel run is whichever
    test another worker finished just before.
    """

    def startTest(self, test: Any) -> None:
        self._named_skips_started = test
        super().startTest(test)  # type: ignore[misc]

    def addSkip(self, test: Any, reason: str) -> None:
        if getattr(self, "_named_skips_started", None) is not test:
            at_line_start(self)
        super().addSkip(test, reason)  # type: ignore[misc]

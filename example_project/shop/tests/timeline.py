"""Record when and where each test ran, to make parallel scheduling visible.

Set EXAMPLE_TIMELINE to a file path and every test that uses TimelineMixin
appends one JSON line to it: process id, test id, class, mp_group, start and
end times and the database names it saw (which reveal per-worker clones).
"""

import json
import os
import time
from typing import TYPE_CHECKING

from django.db import connections

if TYPE_CHECKING:
    from django.test import SimpleTestCase as _Base
else:
    _Base = object

TIMELINE_ENV = "EXAMPLE_TIMELINE"


class TimelineMixin(_Base):
    """Mix in before the Django TestCase class; subclasses must call super()."""

    def setUp(self) -> None:
        super().setUp()
        path = os.environ.get(TIMELINE_ENV)
        if path:
            # Registered first, so it runs last: "end" covers other cleanups,
            # and it runs for failing tests too.
            self.addCleanup(self._record_timeline, path, time.time())

    def _record_timeline(self, path: str, start: float) -> None:
        record = {
            "pid": os.getpid(),
            "test": self.id(),
            "class": type(self).__qualname__,
            "module": type(self).__module__,
            "group": getattr(type(self), "mp_group", None),
            "start": start,
            "end": time.time(),
            "databases": {
                alias: connections[alias].settings_dict["NAME"]
                for alias in sorted(self.databases)
            },
        }
        # default=str: a SQLite NAME may be a Path outside of test databases.
        line = (json.dumps(record, default=str) + "\n").encode()
        # O_APPEND plus a single write keeps lines from concurrent workers whole.
        fd = os.open(path, os.O_APPEND | os.O_WRONLY | os.O_CREAT, 0o644)
        try:
            os.write(fd, line)
        finally:
            os.close(fd)

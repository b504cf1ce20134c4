"""E2E_HALF_CLONE=<file>: the clone for slot 1 is left half made, and the
run hangs there until it is killed (a run killed while it clones).

The clone is made, then its ``keptclones_kept`` table is dropped, as a copy
cut off half way would lack it; ``<file>`` then says so, for the test to
kill the run.
"""

import os
import time
from pathlib import Path

from django.db.backends.base.creation import BaseDatabaseCreation


def install() -> None:
    clone = BaseDatabaseCreation.clone_test_db

    def half_clone(self, suffix, verbosity=1, autoclobber=False, keepdb=False):
        clone(self, suffix, verbosity, autoclobber, keepdb)
        if suffix != "1":
            return
        settings = self.get_test_db_clone_settings(suffix)
        other = type(self.connection)(settings, self.connection.alias)
        try:
            with other.cursor() as cursor:
                cursor.execute("DROP TABLE keptclones_kept")
            if not other.get_autocommit():
                other.commit()
        finally:
            other.close()
        Path(os.environ["E2E_HALF_CLONE"]).write_text("half made")
        time.sleep(120)  # killed long before

    BaseDatabaseCreation.clone_test_db = half_clone

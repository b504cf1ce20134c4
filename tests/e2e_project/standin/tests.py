"""The runner's SQLite file stands in for Django's in-memory test database.

Django never closes an in-memory test database (it ignores close()), so its
connection, and a temporary table made on it, outlives each
TransactionTestCase test. The file the runner uses instead must behave the
same, in-process and in workers.
"""

import time

from django.db import connection
from django.test import TransactionTestCase


class ConnectionLivesOn(TransactionTestCase):
    def test_a_makes_a_temporary_table(self):
        with connection.cursor() as cursor:
            cursor.execute("CREATE TEMP TABLE IF NOT EXISTS standin (x integer)")

    def test_b_the_next_test_still_has_it(self):
        with connection.cursor() as cursor:
            cursor.execute("SELECT count(*) FROM standin")


class ConnectionLivesOnElsewhere(ConnectionLivesOn):
    """A second unit, so that a parallel run uses two workers."""


class RowsStayInTheirDatabase(TransactionTestCase):
    """Under Django's own --parallel, each of its workers must write to its
    own clone, not through a connection to the main test database it
    inherited (the runner must not keep that one open there)."""

    def test_rows(self):
        from django.contrib.contenttypes.models import ContentType

        name = type(self).__name__.lower()
        for i in range(20):
            ContentType.objects.create(app_label="standin", model=f"{name}{i}")
            time.sleep(0.002)
        self.assertEqual(ContentType.objects.filter(app_label="standin").count(), 20)


class RowsStayInTheirDatabaseToo(RowsStayInTheirDatabase):
    pass


class RowsStayInTheirDatabaseThree(RowsStayInTheirDatabase):
    pass


class RowsStayInTheirDatabaseFour(RowsStayInTheirDatabase):
    pass

from django.test import SimpleTestCase


class Malformed(SimpleTestCase):
    mp_group = ("payments", "serial", "extra")

    def test_never_runs(self):
        raise AssertionError("ran despite a bad mp_group")

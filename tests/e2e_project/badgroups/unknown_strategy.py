from django.test import SimpleTestCase


class Sometimes(SimpleTestCase):
    mp_group = ("payments", "sometimes")

    def test_never_runs(self):
        raise AssertionError("ran despite a bad mp_group")

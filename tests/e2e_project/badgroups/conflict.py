from django.test import SimpleTestCase


class First(SimpleTestCase):
    mp_group = ("payments", "serial")

    def test_never_runs(self):
        raise AssertionError("ran despite a bad mp_group")


class Second(SimpleTestCase):
    mp_group = ("payments", "isolated_free")

    def test_never_runs(self):
        raise AssertionError("ran despite a bad mp_group")

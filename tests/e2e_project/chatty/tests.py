"""Tests that print a lot, so that stdout's buffer fills in the middle of
the run: each test's output must still sit right after its own line."""

import unittest


def chatty_class(name):
    def test(self):
        print(f"<<{self.id()}>>" + "x" * 5000)

    return type(name, (unittest.TestCase,), {"test_one": test, "test_two": test})


ChattyA = chatty_class("ChattyA")
ChattyB = chatty_class("ChattyB")
ChattyC = chatty_class("ChattyC")

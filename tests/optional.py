"""Test dependencies that a plain ``pip install .`` does not bring."""

from __future__ import annotations

import importlib.util
import os
import unittest


def require(test: unittest.TestCase, *modules: str) -> None:
    """Skip ``test`` when one of ``modules`` is not installed, so that
    ``python runtests.py`` works from a fresh clone; in CI (``CI`` set),
    where .ci/run installs them all, fail instead."""
    for module in modules:
        if importlib.util.find_spec(module) is None:
            if os.environ.get("CI"):
                test.fail(f"{module} is not installed; .ci/run installs it")
            test.skipTest(f"{module} is not installed")

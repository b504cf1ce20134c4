"""django-concurrent-runner: parallel test groups and concurrent calls for Django.

Names are imported lazily, so that a worker or a call process that imports
``concurrent_runner.worker`` does not pull in the parent's scheduler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "Runner": "concurrent_runner.runner",
    "ConfigurationError": "concurrent_runner.errors",
    "Strategy": "concurrent_runner.groups",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .errors import ConfigurationError as ConfigurationError
    from .groups import Strategy as Strategy
    from .runner import Runner as Runner


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'concurrent_runner' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

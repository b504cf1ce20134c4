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
    "call_concurrently": "concurrent_runner.calls",
    "make_concurrent_calls": "concurrent_runner.calls",
    "ConcurrentTestMixin": "concurrent_runner.calls",
    "WrappedError": "concurrent_runner.calls",
    "ConcurrentCallError": "concurrent_runner.calls",
    "CallResults": "concurrent_runner.calls",
    "mp_lock": "concurrent_runner.sync",
    "mp_message_board": "concurrent_runner.sync",
    "mp_trail": "concurrent_runner.sync",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .calls import CallResults as CallResults
    from .calls import ConcurrentCallError as ConcurrentCallError
    from .calls import ConcurrentTestMixin as ConcurrentTestMixin
    from .calls import WrappedError as WrappedError
    from .calls import call_concurrently as call_concurrently
    from .calls import make_concurrent_calls as make_concurrent_calls
    from .errors import ConfigurationError as ConfigurationError
    from .groups import Strategy as Strategy
    from .runner import Runner as Runner
    from .sync import mp_lock as mp_lock
    from .sync import mp_message_board as mp_message_board
    from .sync import mp_trail as mp_trail


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'concurrent_runner' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

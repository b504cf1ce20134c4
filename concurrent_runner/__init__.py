"""django-concurrent-runner: parallel test groups and concurrent calls for Django.

Names are imported lazily, so that a worker or a call process that imports
``concurrent_runner.parallel.worker`` does not pull in the parent's scheduler.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0.dev0"

_EXPORTS = {
    "Runner": "concurrent_runner.runner",
    "ConfigurationError": "concurrent_runner.errors",
    "Strategy": "concurrent_runner.planning.groups",
    "call_concurrently": "concurrent_runner.calls.concurrent",
    "make_concurrent_calls": "concurrent_runner.calls.concurrent",
    "ConcurrentTestMixin": "concurrent_runner.calls.concurrent",
    "WrappedError": "concurrent_runner.calls.concurrent",
    "ConcurrentCallError": "concurrent_runner.calls.concurrent",
    "CallResults": "concurrent_runner.calls.concurrent",
    "mp_lock": "concurrent_runner.calls.sync",
    "mp_message_board": "concurrent_runner.calls.sync",
    "mp_trail": "concurrent_runner.calls.sync",
}

__all__ = ["__version__", *_EXPORTS]

if TYPE_CHECKING:
    from .calls.concurrent import CallResults as CallResults
    from .calls.concurrent import ConcurrentCallError as ConcurrentCallError
    from .calls.concurrent import ConcurrentTestMixin as ConcurrentTestMixin
    from .calls.concurrent import WrappedError as WrappedError
    from .calls.concurrent import call_concurrently as call_concurrently
    from .calls.concurrent import make_concurrent_calls as make_concurrent_calls
    from .calls.sync import mp_lock as mp_lock
    from .calls.sync import mp_message_board as mp_message_board
    from .calls.sync import mp_trail as mp_trail
    from .errors import ConfigurationError as ConfigurationError
    from .planning.groups import Strategy as Strategy
    from .runner import Runner as Runner


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'concurrent_runner' has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)

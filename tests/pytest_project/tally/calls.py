"""Functions the tests call concurrently (importable by the call processes)."""

from __future__ import annotations

import os

from concurrent_runner import mp_lock, mp_message_board

from .models import Tally


def increment_under_lock(name: str) -> int:
    """A read-modify-write made safe by the run-wide lock; the call's pid."""
    with mp_lock("tally"):
        tally = Tally.objects.get(name=name)
        tally.value += 1
        tally.save()
    return os.getpid()


def read_tally(name: str) -> int:
    return Tally.objects.get(name=name).value


def read_board(key: str) -> object:
    return mp_message_board.get(key)


def count_on_board(key: str) -> None:
    with mp_lock:
        mp_message_board[key] = mp_message_board.get(key, 0) + 1

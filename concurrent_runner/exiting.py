"""The test process ends without the interpreter's last garbage collections.

At exit, Python collects every object it still tracks, in full passes over
the heap (about 60 ms for Django and a small project here; more, the bigger
the project), just before the kernel frees the memory anyway. A
``gc.freeze()`` run by ``atexit`` puts those objects out of the collector's
reach, as Spack does: ``atexit`` handlers, ``weakref.finalize`` callbacks
and the flushing of stdout and stderr still happen. What is skipped is the
``__del__`` of objects that only the collector would free at exit (in a
reference cycle, or held in a module's globals: a module's dictionary is
in a cycle with its functions), which Python does not promise to run.
"""

from __future__ import annotations

import atexit
import gc

_registered = False


def fast_exit_enabled() -> bool:
    """``settings.CONCURRENT_RUNNER_FAST_EXIT``, on unless set False."""
    from .conf import fast_exit

    return fast_exit()


def skip_final_collection() -> None:
    """Freeze the garbage collector at exit (once per process)."""
    global _registered
    if not _registered and fast_exit_enabled():
        _registered = True
        atexit.register(gc.freeze)

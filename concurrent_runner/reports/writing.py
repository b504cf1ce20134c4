"""Where reports go: their paths checked before the run, written after it.

A path that cannot take a report (its folder is missing, it is a folder)
is refused when the runner starts, before any database exists, instead of
after the whole suite ran. A report that still cannot be written at the end
(its folder went away, the disk is full) fails the run, with a message.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from ..errors import ConfigurationError


def report_path_problem(flag: str, value: str | os.PathLike[str]) -> str | None:
    """Why ``flag`` (``--junit-xml``, ``--timeline``) cannot write its report
    to ``value``, with the fix; None if it can, as far as can be told now."""
    path = Path(value)
    folder = path.parent
    if str(value) == "" or path.is_dir():
        return (
            f"{flag} {str(value)!r} is a directory; give the path of the file "
            f"to write, such as {str(path / ('report' + _suffix(flag)))!r}."
        )
    if not folder.exists():
        return (
            f"{flag} {str(value)!r}: the directory {str(folder)!r} does not "
            f"exist. Create it first, or write the report somewhere else."
        )
    if not folder.is_dir():
        return (
            f"{flag} {str(value)!r}: {str(folder)!r} is not a directory. Write "
            f"the report somewhere else."
        )
    if path.exists() and not os.access(path, os.W_OK):
        return f"{flag} {str(value)!r}: the file exists and is not writable."
    if not path.exists() and not os.access(folder, os.W_OK | os.X_OK):
        return (
            f"{flag} {str(value)!r}: cannot create a file in {str(folder)!r} "
            f"(permission denied). Write the report somewhere else."
        )
    return None


def _suffix(flag: str) -> str:
    return ".xml" if flag == "--junit-xml" else ".html"


def report_path_argument(flag: str) -> Callable[[str], str]:
    """An argparse ``type`` that checks a report's path as the flags are
    parsed."""

    def check(value: str) -> str:
        problem = report_path_problem(flag, value)
        if problem is not None:
            # argparse already names the flag.
            raise argparse.ArgumentTypeError(problem.removeprefix(f"{flag} "))
        return value

    return check


def check_report_path(flag: str, value: str | os.PathLike[str] | None) -> None:
    """Refuse, before the run, a path given to the runner by a script."""
    if value is None:
        return
    problem = report_path_problem(flag, value)
    if problem is not None:
        raise ConfigurationError(problem)


def write_reports(
    reports: Iterable[tuple[str, Any, Path | None]], log: Callable[[str], None]
) -> int:
    """Write each ``(what, report, path)`` that has both; return how many
    could not be written (each said so on stderr). Every report is tried;
    an error other than OSError (a bug) is raised after the others."""
    unwritten = 0
    bug: BaseException | None = None
    for what, report, path in reports:
        if report is None or path is None:
            continue
        try:
            report.write(path)
        except OSError as exc:
            unwritten += 1
            print(
                f"The {what} could not be written to {str(path)!r}: {exc}. The "
                f"run fails for it.",
                file=sys.stderr,
            )
        except Exception as exc:
            unwritten += 1
            bug = bug or exc
        else:
            log(f"{what[0].upper()}{what[1:]} written to {path}")
    if bug is not None:
        raise bug
    return unwritten

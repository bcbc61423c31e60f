"""Helpers for cairn stages written in Python.

A stage is `stage.py` defining `class WitWorld(wit_world.WitWorld)` with a
`run(self, invocation)` method, built with componentize-py by
`cairn stage build`. It returns an outcome (see `outcome`) or raises
`fail(...)`. Plain `open()` reaches the sandbox's directories: `/src`,
`/in/<stage>`, `/out` and `/tmp`.
"""

import os
from typing import Optional

from componentize_py_types import Err
from wit_world.imports import host
from wit_world.imports.cairn_stage_types import Invocation, Outcome

Level = host.Level


def debug(message: str) -> None:
    host.log(Level.DEBUG, str(message))


def info(message: str) -> None:
    host.log(Level.INFO, str(message))


def warn(message: str) -> None:
    host.log(Level.WARN, str(message))


def error(message: str) -> None:
    host.log(Level.ERROR, str(message))


def progress(done: int, total: int = 0) -> None:
    """Reports progress: `done` of `total` units (0 when unknown)."""
    host.progress(done, total)


def annotate(path: str, line: int, message: str, severity: Level = Level.WARN, column: Optional[int] = None) -> None:
    """Attaches a diagnostic to a line of a file (line 0: the whole file)."""
    host.annotate(host.Annotation(path=path, line=line, column=column, severity=severity, message=message))


def secret(name: str) -> Optional[str]:
    """The value of a granted secret, or None."""
    return host.secret(name)


def config(invocation: Invocation) -> dict:
    """The invocation's `with` table as a dict."""
    return dict(invocation.config)


def outcome(summary: Optional[str] = None, **outputs) -> Outcome:
    """An outcome: a summary line and named outputs (values become strings)."""
    return Outcome(summary=summary, outputs=sorted((key, str(value)) for key, value in outputs.items()))


def fail(message: str) -> Err:
    """`raise cairn.fail("...")` fails the stage with that message."""
    return Err(message)


def files(root: str = "/src") -> list:
    """Every regular file under `root`, as sorted paths relative to it."""
    found = []
    for folder, _, names in os.walk(root):
        for name in names:
            path = os.path.join(folder, name)
            if os.path.isfile(path):
                found.append(os.path.relpath(path, root))
    return sorted(found)

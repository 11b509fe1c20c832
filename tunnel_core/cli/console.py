"""The streams and environment a command runs with, injected so tests call ``main(argv, env=..., stdout=...)``.

Every ``cli/*cmd.py`` module imports :class:`IO` from here, never from ``cli/main.py``: the
entry module imports the command modules, so the reverse would be a circle.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping

TYPE_CHECKING = False  # see cli/main.py
if TYPE_CHECKING:
    from typing import TextIO


class IO:
    # A plain class, not a dataclass: importing dataclasses costs every CLI command (even --help)
    # a few milliseconds, and this is on the path of all of them.
    __slots__ = ("env", "stderr", "stdout")

    def __init__(self, env: Mapping[str, str], stdout: TextIO, stderr: TextIO) -> None:
        self.env = env
        self.stdout = stdout
        self.stderr = stderr

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()


Handler = Callable[[argparse.Namespace, IO], int]

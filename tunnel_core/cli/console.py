"""The streams and environment a command runs with, injected so tests call ``main(argv, env=..., stdout=...)``.

Every ``cli/*cmd.py`` module imports :class:`IO` from here, never from ``cli/main.py``: the
entry module imports the command modules, so the reverse would be a circle.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TextIO


@dataclass(slots=True)
class IO:
    env: Mapping[str, str]
    stdout: TextIO
    stderr: TextIO

    def out(self, text: str = "") -> None:
        self.stdout.write(text + "\n")
        self.stdout.flush()

    def err(self, text: str) -> None:
        self.stderr.write(text + "\n")
        self.stderr.flush()


Handler = Callable[[argparse.Namespace, IO], int]

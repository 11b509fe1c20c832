"""Progress for long-running commands: a ticking line on stderr, only when stderr is a terminal.

Nothing is ever written to stdout, so ``--json`` output stays machine-readable, and nothing
at all is written when stderr is a file or a pipe (CI logs, agents).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from typing import TextIO

TICK_SECONDS = 0.5


def _is_tty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


@contextlib.contextmanager
def progress(stderr: TextIO, what: str) -> Iterator[None]:
    """Show ``what… Ns`` on ``stderr`` while the block runs, then clear the line."""
    if not _is_tty(stderr):
        yield
        return
    stop = threading.Event()
    started = time.monotonic()

    def tick() -> None:
        while True:
            stderr.write(f"\r{what}… {time.monotonic() - started:.0f}s")
            stderr.flush()
            if stop.wait(TICK_SECONDS):
                return

    thread = threading.Thread(target=tick, name="progress", daemon=True)
    thread.start()
    try:
        yield
    finally:
        stop.set()
        thread.join()
        stderr.write("\r\x1b[K")
        stderr.flush()

"""One advisory lock per state root, held by every command that changes aliases or processes.

It is what makes two concurrent ``runtimes connect`` of one alias start a single daemon:
the second waits for the first, then finds its live process and reuses it.
"""

from __future__ import annotations

import contextlib
import os
import time
from collections.abc import Iterator

from tunnel_core.errors import ConfigError
from tunnel_core.state.root import StateRoot

LOCK_WAIT = 120.0  # longer than one connect can hold it (remote calls + health wait)


@contextlib.contextmanager
def state_lock(root: StateRoot, *, timeout: float = LOCK_WAIT) -> Iterator[None]:
    """Hold the state lock; raise ConfigError if another command keeps it past ``timeout``."""
    import fcntl

    root.ensure_dirs()
    fd = os.open(root.lock_path, os.O_RDWR | os.O_CREAT, 0o600)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.01
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise ConfigError(
                        f"state lock {root.lock_path} is held by another tunnel-client runtimes command; "
                        "wait for it to finish and retry"
                    ) from None
                time.sleep(delay)
                delay = min(delay * 2, 0.1)
        try:
            yield
        finally:
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)

"""Atomic file writes: a reader sees the old content or the new, never half of either."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def atomic_write(path: Path, text: str, *, mode: int = 0o600) -> None:
    """Write ``text`` to ``path`` via a temp file in the same directory and rename it into place."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = _create_temp(path)
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _create_temp(path: Path) -> tuple[int, str]:
    """A new private file next to ``path`` (what tempfile.mkstemp does, without importing tempfile,
    which brings shutil, bz2, lzma and random to every ``run`` that writes its URL file)."""
    for _ in range(100):
        tmp = str(path.parent / f".{path.name}.{os.urandom(6).hex()}.tmp")
        try:
            return os.open(tmp, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_CLOEXEC, 0o600), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"no free temporary file name next to {path}")


def write_setting_file(setting: str, path: Path, text: str, *, mode: int = 0o600) -> None:
    """``atomic_write`` for a file the user named with ``setting``; failures are one ConfigError line."""
    from tunnel_core.errors import ConfigError

    try:
        atomic_write(path, text, mode=mode)
    except OSError as exc:
        raise ConfigError(f"{setting}: cannot write {path}: {exc.strerror or exc}; "
                          "give a file path in a directory you can write") from None


def remove_quietly(path: Path) -> None:
    """Remove a file this process wrote; a path that is gone, or is not a file we could have written, is left."""
    with contextlib.suppress(FileNotFoundError, IsADirectoryError, PermissionError, NotADirectoryError):
        path.unlink()

"""Progress lines go to a terminal's stderr only, never to stdout or to pipes."""

from __future__ import annotations

import io
import threading

from tunnel_core.cli.progress import progress


class FakeTTY(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_progress_ticks_on_a_terminal_and_clears_the_line() -> None:
    err = FakeTTY()
    shown = threading.Event()

    class Watch(FakeTTY):
        def write(self, s: str) -> int:
            if "working" in s:
                shown.set()
            return err.write(s)

    with progress(Watch(), "working"):
        assert shown.wait(5), "the first tick is written at once"
    text = err.getvalue()
    assert text.startswith("\rworking… 0s")
    assert text.endswith("\r\x1b[K")


def test_progress_writes_nothing_when_stderr_is_not_a_terminal() -> None:
    err = io.StringIO()
    with progress(err, "working"):
        pass
    assert err.getvalue() == ""

"""Exponential backoff with full jitter, reset after success."""

from __future__ import annotations

from dataclasses import field

from tunnel_core.records import record


@record(slots=True)
class Backoff:
    minimum: float = 0.2
    maximum: float = 10.0
    factor: float = 2.0
    _attempt: int = field(default=0, init=False)

    def next(self) -> float:
        """Delay before the next attempt: base grows by ``factor`` up to ``maximum``, jittered to [base/2, base]."""
        base = min(self.maximum, self.minimum * (self.factor**self._attempt))
        self._attempt += 1
        import random  # on a failure only: not loaded at every start

        return base / 2 + random.random() * base / 2

    def reset(self) -> None:
        self._attempt = 0

    @property
    def attempts(self) -> int:
        return self._attempt

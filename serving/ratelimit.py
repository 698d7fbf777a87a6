"""Token buckets keyed by API key name or client address, in process memory.

Each key holds up to `burst` tokens and regains `rate` per second; a request takes one. Buckets live in
the worker process, so with N workers a client may get up to N times the configured rate (a shared
limiter needs a shared store). The number of buckets is bounded: full buckets are forgotten first.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable

Clock = Callable[[], float]

_MAX_BUCKETS = 10_000


def retry_after(wait_seconds: float) -> int:
    """The `Retry-After` value for a wait: whole seconds, at least 1."""
    return max(1, math.ceil(wait_seconds))


class Buckets:
    """One token bucket per key (`rate` tokens per second, at most `burst`)."""

    def __init__(
        self, rate: float, burst: int, *, clock: Clock = time.monotonic, max_buckets: int = _MAX_BUCKETS
    ) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a token bucket needs rate > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate = rate
        self.burst = float(burst)
        self._clock = clock
        self._max = max_buckets
        self._buckets: dict[str, tuple[float, float]] = {}  # key -> (tokens, at)

    def _tokens(self, key: str, now: float) -> float:
        found = self._buckets.get(key)
        if found is None:
            return self.burst
        tokens, at = found
        return min(self.burst, tokens + (now - at) * self.rate)

    def _store(self, key: str, tokens: float, now: float) -> None:
        if key not in self._buckets and len(self._buckets) >= self._max:
            self._forget(now)
        self._buckets[key] = (tokens, now)

    def _forget(self, now: float) -> None:
        """Drop buckets that have refilled (they equal a new one); if none has, the oldest half."""
        full = [k for k in self._buckets if self._tokens(k, now) >= self.burst]
        for key in full or list(self._buckets)[: len(self._buckets) // 2 or 1]:
            del self._buckets[key]

    def take(self, key: str) -> float:
        """Take a token: 0.0 when one was there, else the seconds until one will be (nothing taken)."""
        now = self._clock()
        tokens = self._tokens(key, now)
        if tokens >= 1.0:
            self._store(key, tokens - 1.0, now)
            return 0.0
        return (1.0 - tokens) / self.rate

    def wait(self, key: str) -> float:
        """Seconds until `key` has a token (0.0 if it has one now); takes nothing."""
        tokens = self._tokens(key, self._clock())
        return 0.0 if tokens >= 1.0 else (1.0 - tokens) / self.rate

    def charge(self, key: str) -> None:
        """Spend a token after the fact (a failed authentication), never below zero."""
        now = self._clock()
        self._store(key, max(0.0, self._tokens(key, now) - 1.0), now)

    def __len__(self) -> int:
        return len(self._buckets)


def buckets_or_none(rate: float, burst: int) -> Buckets | None:
    """Buckets for a configured limit, or None when it is off (a rate or burst of 0)."""
    return Buckets(rate, burst) if rate > 0 and burst > 0 else None

"""A circuit breaker: after N consecutive failures stop calling an endpoint for a cool-down.

Closed lets every call through. Open refuses calls until the cool-down has passed, then one
trial call goes through (half-open): success closes the breaker, failure opens it again.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Literal

BreakerState = Literal["closed", "open", "half_open"]


class CircuitBreaker:
    """Counts consecutive failures and refuses calls while open."""

    def __init__(
        self,
        failures: int = 3,
        cooldown_s: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.threshold = max(1, failures)
        self.cooldown_s = cooldown_s
        self._clock = clock
        self._lock = threading.Lock()
        self._failures = 0
        self._opened_at: float | None = None
        self._trial_running = False

    @property
    def state(self) -> BreakerState:
        """Closed, open, or half-open (cool-down over, a trial call allowed)."""
        with self._lock:
            return self._state_locked()

    def _state_locked(self) -> BreakerState:
        if self._opened_at is None:
            return "closed"
        if self._clock() - self._opened_at >= self.cooldown_s:
            return "half_open"
        return "open"

    def retry_in(self) -> float:
        """Seconds until a trial call is allowed; 0 when calls go through."""
        with self._lock:
            if self._opened_at is None:
                return 0.0
            return max(0.0, self.cooldown_s - (self._clock() - self._opened_at))

    def allow(self) -> bool:
        """Whether a call may go out now; in half-open only one trial at a time."""
        with self._lock:
            state = self._state_locked()
            if state == "closed":
                return True
            if state == "open" or self._trial_running:
                return False
            self._trial_running = True
            return True

    def success(self) -> None:
        """Record a call that worked: the breaker closes."""
        with self._lock:
            self._failures = 0
            self._opened_at = None
            self._trial_running = False

    def failure(self) -> None:
        """Record a failed call: a failed trial, or the Nth in a row, opens the breaker."""
        with self._lock:
            self._failures += 1
            if self._trial_running or self._failures >= self.threshold:
                self._opened_at = self._clock()
            self._trial_running = False

    def release(self) -> None:
        """Record a call that ended with no verdict (cancelled before any answer): nothing
        changes, except that a half-open trial slot is free again (issue 12)."""
        with self._lock:
            self._trial_running = False

    @property
    def consecutive_failures(self) -> int:
        """Failures since the last success."""
        with self._lock:
            return self._failures

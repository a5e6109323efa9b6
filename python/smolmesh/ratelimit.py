"""A token bucket: how the node limits the ICMP errors it sends (RFC 4443, section 2.4 (f)).

The bucket holds up to `burst` tokens and gains `rate` tokens a second; each event takes one, and
an event that finds no whole token is refused. So any stretch of t seconds allows at most
`burst + rate * t` events. Rate 0 never refills: `burst` events in the bucket's life, then none;
burst 0 allows nothing at all. Time is passed in (seconds of a monotonic clock), so tests need no
clock.
"""

from __future__ import annotations


class TokenBucket:
    """At most `burst` events at once, and `rate` a second in the long run."""

    def __init__(self, rate: float, burst: int, now: float) -> None:
        if not rate >= 0 or burst < 0:  # `not >=` refuses NaN too
            raise ValueError(f"a token bucket needs rate >= 0 and burst >= 0, not {rate}, {burst}")
        self.rate = rate
        self.burst = burst
        self._tokens = float(burst)
        self._last = now

    def take(self, now: float) -> bool:
        """True if an event may happen at `now` (and count it); False if it is over the limit."""
        if now > self._last:  # a clock that steps back refills nothing
            self._tokens = min(float(self.burst), self._tokens + (now - self._last) * self.rate)
            self._last = now
        if self._tokens < 1.0:
            return False
        self._tokens -= 1.0
        return True

    @property
    def tokens(self) -> float:
        """Tokens left as of the last `take`."""
        return self._tokens

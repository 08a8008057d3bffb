"""Per-object retry backoff: one failing object never delays another."""

from __future__ import annotations

from collections.abc import Callable, Hashable
from dataclasses import dataclass, field


@dataclass
class Backoff:
    """Exponential delay per key (an owner's write stream), reset by a success."""

    initial: float = 1.0
    maximum: float = 60.0
    _delay: dict[Hashable, float] = field(default_factory=dict)
    _until: dict[Hashable, float] = field(default_factory=dict)

    def failed(self, key: Hashable, now: float) -> float:
        """Record a failure; returns when ``key`` may be tried again."""
        delay = min(self.maximum, self._delay.get(key, self.initial / 2) * 2)
        self._delay[key] = delay
        self._until[key] = now + delay
        return now + delay

    def succeeded(self, key: Hashable) -> None:
        """Forget ``key``'s failures."""
        self._delay.pop(key, None)
        self._until.pop(key, None)

    def waiting(self, key: Hashable, now: float) -> bool:
        """Whether ``key`` is still backing off."""
        return self._until.get(key, 0.0) > now

    def next_due(self, now: float) -> float | None:
        """The earliest moment a waiting key may be tried again (None when none waits)."""
        pending = [t for t in self._until.values() if t > now]
        return min(pending) if pending else None

    def forget(self, match: Callable[[Hashable], bool]) -> None:
        """Drop the keys ``match`` accepts (a change made them worth trying at once)."""
        for key in [k for k in self._delay if match(k)]:
            self.succeeded(key)

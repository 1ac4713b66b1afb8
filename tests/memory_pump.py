"""Drive two protocols connected in memory (twisted.test.iosim) with a fake clock."""

from __future__ import annotations

from twisted.internet.task import Clock
from twisted.test import iosim


class ClockedPump:
    """An iosim pump that also runs the clock's due calls (the tunnel flushes once per
    reactor turn, with callLater(0)), until nothing moves any more."""

    def __init__(self, pump: iosim.IOPump, clock: Clock) -> None:
        self.pump = pump
        self.clock = clock

    def flush(self, limit: int = 10_000) -> None:
        for _ in range(limit):
            self.clock.advance(0)
            moved = self.pump.pump()
            due = any(call.getTime() <= self.clock.seconds() for call in self.clock.getDelayedCalls())
            if not moved and not due:
                return
        raise AssertionError("the protocols never went quiet")


def connect(server, client, clock: Clock):
    """Connect two protocol instances in memory; returns (server, client, pump)."""
    c, s, pump = iosim.connectedServerAndClient(lambda: server, lambda: client)
    clocked = ClockedPump(pump, clock)
    clocked.flush()
    return s, c, clocked

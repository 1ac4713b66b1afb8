"""The access log's buffer: decisions are noted in memory on the request path and written in batches.

Every refusal (deny, sign-in required) and every sign-in event is a row of its own. Allowed requests
alike (same resource, user, client address, rule and reason) within one flush are one row with their
number and the first one's method and path: an audit trail of who reached what, without a database
write per request. The buffer is bounded: beyond ``max_pending`` rows, decisions are counted, dropped,
and the count is logged at the next flush. Old rows are deleted after the retention period.

An ``observer`` (the console's live events) sees each row as it is noted: refusals and sign-in events
at once, allowed requests at each flush tick (every second), aggregated, with the number since the
last tick as their ``count``. Without an observer nothing of this runs.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

from twisted.internet import task
from twisted.logger import Logger

log = Logger()

FLUSH_INTERVAL = 1.0
PRUNE_INTERVAL = 3600.0
MAX_BATCH = 5000


class AccessRecorder:
    """Collects access decisions and sign-in events; writes them with ``store.run`` every second."""

    def __init__(
        self, store: Callable[[], Any], reactor: Any, *, max_pending: int, retention_days: float
    ) -> None:
        self._store = store
        self.reactor = reactor
        self.max_pending = max_pending
        self.retention = timedelta(days=retention_days)
        self._rows: list[dict[str, Any]] = []
        self._allowed: dict[tuple, dict[str, Any]] = {}
        self.dropped = 0
        self.written = 0
        self._flushing = False
        self._loops: list[task.LoopingCall] = []
        #: Called with each row as it is noted and the count to show (see the module's docstring), or
        #: None. The row is the buffer's own: the observer copies what it keeps, and changes nothing.
        self.observer: Callable[[dict[str, Any], int], None] | None = None
        self._shown: dict[tuple, int] = {}  # allowed rows' counts already given to the observer

    def start(self, flush_interval: float = FLUSH_INTERVAL) -> None:
        for interval, fn in ((flush_interval, self.flush), (PRUNE_INTERVAL, self.prune)):
            loop = task.LoopingCall(fn)
            loop.clock = self.reactor
            loop.start(interval, now=False).addErrback(lambda f: log.failure("access log loop stopped", f))
            self._loops.append(loop)

    def stop(self) -> Any:
        for loop in self._loops:
            if loop.running:
                loop.stop()
        self._loops = []
        return self.flush()

    def __len__(self) -> int:
        return len(self._rows) + len(self._allowed)

    def record(
        self,
        kind: str,
        outcome: str,
        reason: str,
        *,
        org_id: str | None = None,
        resource_id: str | None = None,
        user_id: str | None = None,
        subject: str | None = None,
        method: str | None = None,
        host: str | None = None,
        path: str | None = None,
        client_address: str | None = None,
        rule_id: str | None = None,
    ) -> None:
        """Note one decision or event (cheap: a dict, or a counter bumped)."""
        if outcome == "allow" and kind == "request":
            key = (resource_id, user_id, client_address, rule_id, reason)
            row = self._allowed.get(key)
            if row is not None:
                row["count"] += 1
                return
        if len(self) >= self.max_pending:
            self.dropped += 1
            return
        row = {
            "at": datetime.now(UTC),
            "org_id": org_id,
            "resource_id": resource_id,
            "kind": kind,
            "outcome": outcome,
            "reason": reason,
            "user_id": user_id,
            "subject": subject,
            "method": method,
            "host": host,
            "path": path,
            "client_address": client_address,
            "rule_id": rule_id,
            "count": 1,
        }
        if outcome == "allow" and kind == "request":
            self._allowed[key] = row
        else:
            self._rows.append(row)
            if self.observer is not None:
                self._observe(row, 1)

    def allowed_again(
        self, resource_id: str, user_id: str | None, client_address: str, decision: Any
    ) -> bool:
        """Count one more allowed request like one already buffered (the request path's shortcut);
        False if there is none like it yet (then :meth:`record` it)."""
        row = self._allowed.get((resource_id, user_id, client_address, decision.rule_id, decision.reason))
        if row is None:
            return False
        row["count"] += 1
        return True

    def _observe(self, row: dict[str, Any], count: int) -> None:
        assert self.observer is not None
        try:
            self.observer(row, count)
        except Exception:  # a watcher must never break the access log
            log.failure("an access log observer failed")

    def show_allowed(self) -> None:
        """Give the observer the allowed requests noted since the last call (one row per kind of
        request, with how many there were since)."""
        if self.observer is None:
            self._shown.clear()
            return
        for key, row in list(self._allowed.items()):
            new = row["count"] - self._shown.get(key, 0)
            if new > 0:
                self._shown[key] = row["count"]
                self._observe(row, new)

    def flush(self) -> Any:
        """Write what is buffered (one transaction); returns the Deferred of the write, or None."""
        self.show_allowed()
        store = self._store()
        if store is None or self._flushing or not len(self):
            self._report_dropped()
            return None
        rows = self._rows + list(self._allowed.values())
        self._rows, self._allowed = [], {}
        self._shown.clear()
        rows.sort(key=lambda row: row["at"])
        batch, rest = rows[:MAX_BATCH], rows[MAX_BATCH:]
        self._rows = rest  # a huge backlog drains over several flushes
        self._flushing = True
        from kokoa.store import append_access

        d = store.run(append_access, batch)

        def done(count: int) -> None:
            self.written += count

        def failed(failure: Any) -> None:
            log.warn("cannot write {n} access log rows: {why}", n=len(batch), why=failure.getErrorMessage())

        def finished(_: Any) -> None:
            self._flushing = False
            self._report_dropped()

        return d.addCallbacks(done, failed).addBoth(finished)

    def _report_dropped(self) -> None:
        if self.dropped:
            log.warn(
                "access log buffer full ({limit} rows): {n} decisions were not recorded",
                limit=self.max_pending,
                n=self.dropped,
            )
            self.dropped = 0

    def prune(self) -> Any:
        """Delete rows older than the retention period, and ended sessions and spent codes."""
        store = self._store()
        if store is None:
            return None
        from kokoa.store import prune_access, prune_sessions

        def tx(conn: Any) -> int:
            return prune_access(conn, datetime.now(UTC) - self.retention) + prune_sessions(conn)

        return store.run(tx).addErrback(
            lambda f: log.warn("cannot prune the access log: {why}", why=f.getErrorMessage())
        )

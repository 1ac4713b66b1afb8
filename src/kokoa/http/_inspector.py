"""The request inspector: the requests going through a resource right now, for whoever watches it.

The gateway keeps a bounded ring of recent requests per resource, and only while someone watches that
resource; when nobody does, the request path asks :meth:`Inspector.watching` (one dictionary lookup)
and nothing else happens. A watched request is noted as it goes (an :class:`Inspection` on the
exchange) and recorded once, when it ends: complete, refused, failed, or its client gone.

What is kept never holds a secret: the values of credential headers (cookies, ``Authorization``,
Kokoa's own ``X-Kokoa-*``, the identity headers the gateway adds and those it strips) and of any
header holding a Kokoa token become ``"[redacted]"``, and so does a Kokoa token in the path.

Pure code: no reactor, the clock is injected.
"""

from __future__ import annotations

import itertools
import re
import time
from collections import deque
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any

from twisted.logger import Logger

log = Logger()

REDACTED = "[redacted]"
#: The name of the last header pair when a head was cut at ``max_head_bytes`` (no header has it).
TRUNCATED = "[truncated]"
#: The path (and query) as received is kept up to this many characters.
MAX_PATH = 2048
#: Entries a resource's watchers may get at once (then ``max_rate`` a second).
BURST = 100

#: Headers whose values are never kept (lower case; "_" in a received name counts as "-").
SECRET_HEADERS = frozenset(
    {
        "cookie",
        "set-cookie",
        "authorization",
        "proxy-authorization",
        # The identity headers the gateway adds (their default names; others come from [auth]).
        "remote-user",
        "remote-email",
        "remote-groups",
        "remote-name",
    }
)
#: Header name prefixes whose values are never kept.
SECRET_PREFIXES = ("x-kokoa-",)
#: A Kokoa API key (``kk_``) or share token (``kks_``) anywhere in a value, in any case, also with
#: its "_" percent-encoded (a token in a URL in a Referer). Wider than the front's own check: here
#: a false positive costs only a hidden value.
_TOKEN = re.compile(r"kks?(?:_|%5f)", re.IGNORECASE)
#: A Kokoa token in a path or query: from its prefix to the next separator.
_PATH_TOKEN = re.compile(r"kks?(?:_|%5f)[^/?&;#=\s]*", re.IGNORECASE)


class InspectorBusy(Exception):
    """More watchers than ``max_watchers`` (over all resources)."""


def _text(value: str | bytes) -> str:
    return value.decode("latin-1") if isinstance(value, bytes) else value


def holds_token(value: str | bytes) -> bool:
    """Whether a value contains a Kokoa token (or what looks like the start of one)."""
    return _TOKEN.search(_text(value)) is not None


def is_secret_header(
    name: str, names: frozenset[str] = SECRET_HEADERS, prefixes: tuple[str, ...] = SECRET_PREFIXES
) -> bool:
    """Whether a header's value is never kept, by its (lower-case) name."""
    name = name.replace("_", "-")
    return name in names or name.startswith(prefixes)


def redact_headers(
    headers: Iterable[tuple[str | bytes, str | bytes]] | Iterable[list[str]],
    *,
    names: frozenset[str] = SECRET_HEADERS,
    prefixes: tuple[str, ...] = SECRET_PREFIXES,
    max_bytes: int = 16384,
) -> list[list[str]]:
    """A head as the inspector keeps it: ``[[name, value], ...]`` in the order received, names in
    lower case, secret values ``"[redacted]"``; once the kept pairs would pass ``max_bytes`` (each
    counts its name, value and 4 bytes, as on the wire), the rest is left out and a last pair
    ``["[truncated]", "<n> more header fields (<b> bytes) not kept"]`` says so.

    ``names`` and ``prefixes`` (lower case) are the secret headers; a value holding a Kokoa token is
    redacted whatever its name."""
    kept: list[list[str]] = []
    size = 0
    left = left_bytes = 0
    for raw_name, raw_value in headers:
        name = _text(raw_name).lower()
        value = _text(raw_value)
        if is_secret_header(name, names, prefixes) or _TOKEN.search(value) is not None:
            value = REDACTED
        cost = len(name) + len(value) + 4
        if left or size + cost > max_bytes:
            left += 1
            left_bytes += cost
            continue
        size += cost
        kept.append([name, value])
    if left:
        kept.append([TRUNCATED, f"{left} more header fields ({left_bytes} bytes) not kept"])
    return kept


def redact_path(path: str | bytes) -> str:
    """The path and query as received, with any Kokoa token redacted, cut at ``MAX_PATH``."""
    text = _text(path)
    if _TOKEN.search(text) is not None:
        text = _PATH_TOKEN.sub(REDACTED, text)
    return text[:MAX_PATH]


def iso_time(seconds: float) -> str:
    """``2025-01-31T12:34:56.789Z``."""
    return datetime.fromtimestamp(seconds, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class Inspector:
    """The rings of the watched resources, and their watchers.

    ``watch`` starts a ring for a resource (the request path then notes its requests) and returns
    the function that ends the watch; the ring goes with the resource's last watcher. Each request
    that ends goes into the ring as it is (cheap: references, no formatting); it becomes an entry
    (a dict, redacted) when someone reads it: :meth:`recent`, or a watcher's callback.

    Watchers get up to ``burst`` entries at once (a page load passes whole) and ``max_rate`` a
    second after that, per resource (a token bucket; ``max_rate`` 0: every entry): under heavy
    load the rest stay in the ring only, and the next entry a watcher gets says in ``skipped`` how
    many it did not get (0 otherwise; entries from :meth:`recent` have 0). Formatting every request
    of a busy resource would cost the requests themselves, and nobody reads 2,000 lines a second.

    Nor is every request of a flood noted: :meth:`begin` notes at most ``max_inspected`` requests a
    second per resource (a bucket of as many; 0: every one) and counts the others in ``skipped``
    too, so that watching a resource costs it a bounded amount of work whatever its load: below
    that rate (most resources) the ring holds every request; above it, a sample.

    A watcher that raises is dropped and logged. Entries are shared between watchers and the ring:
    nobody may change one."""

    def __init__(
        self,
        *,
        ring_size: int = 200,
        max_watchers: int = 32,
        max_head_bytes: int = 16384,
        max_rate: float = 25.0,
        burst: int = BURST,
        max_inspected: float = 500.0,
        clock: Callable[[], float] = time.time,
    ) -> None:
        if ring_size < 1 or burst < 1 or min(max_watchers, max_head_bytes, max_rate, max_inspected) < 0:
            raise ValueError(
                "ring_size and burst must be at least 1; max_watchers, max_head_bytes, max_rate and"
                " max_inspected at least 0"
            )
        self.ring_size = ring_size
        self.max_watchers = max_watchers
        self.max_head_bytes = max_head_bytes
        self.max_rate = max_rate
        self._burst = float(burst)
        self.max_inspected = max_inspected
        self.clock = clock
        self._rings: dict[str, deque[dict | Inspection]] = {}
        self._watchers: dict[str, dict[int, Callable[[dict], None]]] = {}
        #: resource id -> [tokens to deliver, last refill, skipped, tokens to note, last refill]
        self._buckets: dict[str, list[float]] = {}
        self._count = 0
        self._keys = itertools.count(1)
        self._ids = itertools.count(1)
        self.secret_names = SECRET_HEADERS
        self.secret_prefixes = SECRET_PREFIXES
        self._hidden: Any = None

    # ------------------------------------------------------------------ watching

    def watching(self, resource_id: str) -> bool:
        """Whether anyone watches the resource (what the request path asks: one lookup)."""
        return resource_id in self._rings

    @property
    def watchers(self) -> int:
        """Watchers now, over all resources."""
        return self._count

    def watch(self, resource_id: str, callback: Callable[[dict], None]) -> Callable[[], None]:
        """Call ``callback(entry)`` for requests to the resource that end from now on (at most
        ``max_rate`` a second); returns the function that stops it (calling it again does nothing).
        Raises :class:`InspectorBusy` beyond ``max_watchers``."""
        if self._count >= self.max_watchers:
            raise InspectorBusy(
                f"{self._count} watchers already (max_watchers is {self.max_watchers}): try again later"
            )
        key = next(self._keys)
        watchers = self._watchers.get(resource_id)
        if watchers is None:
            watchers = self._watchers[resource_id] = {}
            self._rings[resource_id] = deque(maxlen=self.ring_size)
            now = self.clock()
            self._buckets[resource_id] = [self._burst, now, 0, float(self.max_inspected), now]
        watchers[key] = callback
        self._count += 1

        def unwatch() -> None:
            self._drop(resource_id, key)

        return unwatch

    def _drop(self, resource_id: str, key: int) -> None:
        watchers = self._watchers.get(resource_id)
        if watchers is None or watchers.pop(key, None) is None:
            return
        self._count -= 1
        if not watchers:
            del self._watchers[resource_id]
            del self._rings[resource_id]
            del self._buckets[resource_id]

    def recent(self, resource_id: str) -> list[dict]:
        """The resource's ring, oldest first (empty when nobody watches it)."""
        ring = self._rings.get(resource_id)
        if ring is None:
            return []
        return [item if isinstance(item, dict) else item.entry() for item in ring]

    # ------------------------------------------------------------------ recording

    def hide(self, names: Iterable[str | bytes], prefixes: Iterable[str | bytes] = ()) -> None:
        """Keep these headers' values out too (lower-cased; the configured identity headers, the
        bearer header and ``[auth] strip_headers``, a prefix without its "*")."""
        self.secret_names = self.secret_names | {_text(n).lower().replace("_", "-") for n in names}
        extra = tuple(_text(p).lower().replace("_", "-") for p in prefixes)
        self.secret_prefixes = self.secret_prefixes + tuple(p for p in extra if p not in self.secret_prefixes)

    def hide_gate(self, gate: Any) -> None:
        """:meth:`hide` what an access gate strips and reads (once per gate)."""
        if gate is None or self._hidden is gate:
            return
        self._hidden = gate
        self.hide(gate.drop_headers | gate.token_headers, gate.drop_prefixes)

    def begin(self, resource_id: str, head: Any, client_address: str, gate: Any = None) -> Inspection | None:
        """Start noting a request to a watched resource: ``head`` has ``method``, ``raw_target`` and
        ``headers`` (a RequestHead); ``gate``, the access gate, names more headers to redact. None
        when the resource is not watched, or is over ``max_inspected`` (the request is counted)."""
        bucket = self._buckets.get(resource_id)
        if bucket is None:
            return None
        rate = self.max_inspected
        if rate:
            now = self.clock()
            tokens = min(rate, bucket[3] + (now - bucket[4]) * rate)
            bucket[4] = now
            if tokens < 1.0:
                bucket[3] = tokens
                bucket[2] += 1
                return None
            bucket[3] = tokens - 1.0
        if gate is not None and gate is not self._hidden:
            self.hide_gate(gate)
        return Inspection(self, resource_id, head.method, head.raw_target, head.headers, client_address)

    def next_id(self) -> str:
        return str(next(self._ids))

    def safe(self, entry: dict) -> dict:
        """An entry made safe, whoever built it: an ``id`` if it has none, the ``path`` redacted
        and cut, ``request_headers`` and ``response_headers`` (pairs of str or bytes, as received
        and sent) redacted and capped at ``max_head_bytes``. Changes ``entry`` and returns it."""
        if "id" not in entry:
            entry["id"] = self.next_id()
        if "path" in entry:
            entry["path"] = redact_path(entry["path"])
        for key in ("request_headers", "response_headers"):
            if key in entry:
                entry[key] = redact_headers(
                    entry[key],
                    names=self.secret_names,
                    prefixes=self.secret_prefixes,
                    max_bytes=self.max_head_bytes,
                )
        entry.setdefault("skipped", 0)
        return entry

    def record(self, resource_id: str, entry: dict | Inspection) -> None:
        """Append an entry to the resource's ring and hand it to each watcher (within ``max_rate``);
        nothing when nobody watches. A dict is made :meth:`safe` first; an :class:`Inspection` is
        kept as it is and formatted (safely) when read."""
        ring = self._rings.get(resource_id)
        if ring is None:
            return
        if isinstance(entry, dict):
            entry = self.safe(entry)
        ring.append(entry)
        bucket = self._buckets[resource_id]
        if self.max_rate:
            now = self.clock()
            tokens = min(self._burst, bucket[0] + (now - bucket[1]) * self.max_rate)
            bucket[1] = now
            if tokens < 1.0:
                bucket[0] = tokens
                bucket[2] += 1
                return
            bucket[0] = tokens - 1.0
        shown = entry if isinstance(entry, dict) else entry.entry()
        if bucket[2]:
            shown = {**shown, "skipped": int(bucket[2])}
            bucket[2] = 0
        for key, callback in list(self._watchers[resource_id].items()):
            try:
                callback(shown)
            except Exception:
                log.failure("inspector watcher of resource {resource} failed: dropped", resource=resource_id)
                self._drop(resource_id, key)


def _rule_info(rule: Any) -> dict:
    cidr = getattr(rule, "cidr", None)
    return {
        "id": rule.id,
        "priority": getattr(rule, "priority", None),
        "action": getattr(rule, "action", None),
        "method": getattr(rule, "method", None),
        "path": getattr(rule, "path", None),
        "cidr": None if cidr is None else str(cidr),
        "pattern": getattr(rule, "label", "") or rule.id,
    }


def _parse_head(head: bytes) -> tuple[int | None, list[tuple[bytes, bytes]]]:
    """(status, headers) of a response head's bytes."""
    lines = head.split(b"\r\n")
    try:
        status: int | None = int(lines[0].split(b" ", 2)[1])
    except (IndexError, ValueError):
        status = None
    headers = []
    for line in lines[1:]:
        name, sep, value = line.partition(b":")
        if sep:
            headers.append((name, value.strip()))
    return status, headers


class Inspection:
    """One watched request, noted as it goes (references only: the request path stays cheap) and
    recorded once when it ends; :meth:`entry` makes the dict, once, when someone reads it.

    The request head is the client's, as received; the response head is the one sent to the client
    (the upstream's, or the gateway's own answer). Byte counts are body bytes (without chunk
    framing)."""

    __slots__ = (
        "_entry",
        "bytes_in",
        "bytes_out",
        "client_address",
        "decision",
        "ended",
        "ended_at",
        "id",
        "identity",
        "inspector",
        "local",
        "method",
        "path",
        "policy",
        "request_headers",
        "resource_id",
        "response",
        "started",
        "target",
    )

    def __init__(
        self,
        inspector: Inspector,
        resource_id: str,
        method: bytes,
        path: bytes,
        headers: list,
        client_address: str,
    ) -> None:
        self.inspector = inspector
        self.resource_id = resource_id
        self.started = inspector.clock()
        self.method = method
        self.path = path
        self.request_headers = headers
        self.client_address = client_address
        self.decision: Any = None
        self.identity: Any = None
        self.policy: Any = None
        self.target: Any = None
        self.response: bytes | None = None
        self.local = False
        self.bytes_out = 0
        self._entry: dict | None = None

    def decided(self, decision: Any, identity: Any, client_address: str, policy: Any = None) -> None:
        """The gate's decision (``decision.outcome``, ``.rule_id``), who asked (an Identity or
        None), from where, and the resource's policy (to name the rule that decided)."""
        self.decision = decision
        self.identity = identity
        self.client_address = client_address
        self.policy = policy

    def served_by(self, target: Any) -> None:
        """The target (``id``, ``site_id``, ``target``) the request went to."""
        self.target = target

    def responded(self, head: bytes) -> None:
        """The response head sent to the client, as sent."""
        self.response = head
        self.local = False

    def answered(self, response: bytes) -> None:
        """The gateway answered itself: ``response`` is the whole answer (head and body)."""
        self.response = response
        self.local = True

    def finish(self, bytes_in: int, ended: str = "complete") -> None:
        """Record the request: ``ended`` is "complete", "client_gone", "upstream_gone" or
        "upgraded" (a switch of protocols: its time and bytes end at the 101)."""
        inspector = self.inspector
        self.ended_at = inspector.clock()
        self.bytes_in = bytes_in
        self.ended = ended
        self.id = next(inspector._ids)
        response = self.response
        if response is not None and len(response) > inspector.max_head_bytes:
            self.entry()  # a large answer: format (and cap) it now rather than keep it
        inspector.record(self.resource_id, self)

    def entry(self) -> dict:
        """The entry (made once, redacted); the references it was made from are let go."""
        if self._entry is not None:
            return self._entry
        status = None
        response_headers: list = []
        bytes_out = self.bytes_out
        if self.response is not None:
            head, _, body = self.response.partition(b"\r\n\r\n")
            status, response_headers = _parse_head(head)
            if self.local:
                bytes_out += len(body)
        decision = self.decision
        outcome = rule = None
        if decision is not None:
            outcome = decision.outcome
            if decision.rule_id is not None:
                found = next((r for r in getattr(self.policy, "rules", ()) if r.id == decision.rule_id), None)
                rule = _rule_info(found) if found is not None else {"id": decision.rule_id, "pattern": None}
                if outcome == "allow" and rule.get("action") == "bypass":
                    outcome = "bypass"
        identity = self.identity
        target = self.target
        entry = self.inspector.safe(
            {
                "id": str(self.id),
                "time": iso_time(self.started),
                "method": _text(self.method),
                "path": self.path,
                "status": status,
                "duration_ms": round(max(0.0, self.ended_at - self.started) * 1000.0, 3),
                "bytes_in": self.bytes_in,
                "bytes_out": bytes_out,
                "user": (identity.email or identity.user_id) if identity is not None else None,
                "client_address": self.client_address,
                "decision": outcome,
                "rule": rule,
                "target": None
                if target is None
                else {"id": target.id, "site_id": target.site_id, "target": target.target},
                "ended": self.ended,
                "request_headers": self.request_headers,
                "response_headers": response_headers,
            }
        )
        self._entry = entry
        self.request_headers = self.response = self.policy = self.identity = self.decision = None
        return entry

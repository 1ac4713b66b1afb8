"""``twistd kokoa`` for bench/http_inspector.py, with one addition: a switch for the request inspector.

Run it with twistd's own arguments (``_inspected_gateway.py -n --pidfile= -l - kokoa --config ...``):
it is the real twistd and the real gateway service. On SIGUSR2 it reads the file named by
``KOKOA_BENCH_INSPECT`` and watches the resource whose id it holds, as a console would (every entry
serialized to JSON, as a Server-Sent Events route sends it), or stops watching if the file is empty;
``<id> all`` watches with the inspector noting every request (``max_inspected`` 0, no sampling);
each switch is logged (``bench inspector: watching <id>`` / ``bench inspector: stopped after <n>
entries``), which the benchmark waits for.

The gateway's admin API has no inspector route yet; once it has, the benchmark can watch through it
and this file can go.
"""

from __future__ import annotations

import json
import os
import signal
import sys
from pathlib import Path

from twisted.logger import Logger
from twisted.scripts import twistd

from kokoa.gateway import tap

log = Logger()
_make_service = tap.makeService


def makeService(options, reactor=None):
    top = _make_service(options, reactor) if reactor is not None else _make_service(options)
    control = Path(os.environ["KOKOA_BENCH_INSPECT"])
    state = {"stop": None, "entries": 0, "bytes": 0}

    def consume(entry: dict) -> None:
        state["entries"] += 1
        state["bytes"] += len(json.dumps(entry))

    def switch() -> None:
        resource_id, _, mode = control.read_text().strip().partition(" ")
        inspector = top.front.inspector
        if state["stop"] is not None:
            state["stop"]()
            state["stop"] = None
            log.info(
                "bench inspector: stopped after {n} entries ({b} bytes of JSON)",
                n=state["entries"],
                b=state["bytes"],
            )
        if resource_id:
            state["entries"] = state["bytes"] = 0
            inspector.max_inspected = (
                0 if mode == "all" else state.setdefault("default", inspector.max_inspected)
            )
            state["stop"] = inspector.watch(resource_id, consume)
            log.info("bench inspector: watching {id} {mode}", id=resource_id, mode=mode or "sampled")

    from twisted.internet import reactor as running

    signal.signal(signal.SIGUSR2, lambda *_: running.callFromThread(switch))
    return top


tap.makeService = makeService

if __name__ == "__main__":
    sys.argv[0] = "twistd"
    twistd.run()

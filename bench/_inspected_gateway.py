"""``twistd kokoa`` for bench/http_inspector.py, with one addition: a switch for the inspector's sampling.

Run it with twistd's own arguments (``_inspected_gateway.py -n --pidfile= -l - kokoa --config ...``):
it is the real twistd and the real gateway service. The benchmark watches the resource through the
admin API's inspector route, as the console does; this only lets it turn the inspector's sampling off
for its context row. On SIGUSR2 it reads the file named by ``KOKOA_BENCH_INSPECT``: "all" makes the
inspector note every request (``max_inspected`` 0), anything else restores the default; then it logs
``bench inspector: max_inspected=<n> watchers=<n>``, which the benchmark waits for (and reads the
number of watchers from).
"""

from __future__ import annotations

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
    inspector = top.front.inspector
    default = inspector.max_inspected

    def switch() -> None:
        inspector.max_inspected = 0 if control.read_text().strip() == "all" else default
        log.info(
            "bench inspector: max_inspected={n} watchers={w}", n=inspector.max_inspected, w=inspector.watchers
        )

    from twisted.internet import reactor as running

    signal.signal(signal.SIGUSR2, lambda *_: running.callFromThread(switch))
    return top


tap.makeService = makeService

if __name__ == "__main__":
    sys.argv[0] = "twistd"
    twistd.run()

"""Many idle tunnel sessions to one gateway from ONE Twisted process, with Kokoa's own
client pieces (``kokoa.transports.client_endpoint`` + ``kokoa.tunnel.TunnelProtocol``).

Driven by lines on stdin, answering one line on stdout for each:

    open N   -> opens sessions until N are up;  answers "ready N" (or "error ...")
    close    -> closes every session;           answers "closed"
    rss      -> answers "rss KIB" (this process's VmRSS)
    (EOF)    -> closes everything and exits

Session number k (from 0) authenticates as the k-th entry of ``--sites-file`` divided by
``--per-site`` (the gateway caps tunnels per site, as real edges hold a few each). The file
is JSON ``[[site_id, secret], ...]``: secrets never go on the command line.
"""

from __future__ import annotations

import argparse
import json
import resource
import sys
from pathlib import Path

from twisted.internet import defer, stdio, task
from twisted.internet.protocol import Factory
from twisted.protocols.basic import LineReceiver

from kokoa.transports import Trust, client_endpoint
from kokoa.tunnel import Refusal, TunnelProtocol
from kokoa.wire import ErrorCode, Role

#: Seconds one ``open`` may take before it answers with an error.
OPEN_TIMEOUT = 300.0
#: Seconds a clean close may take before the connection is aborted.
CLOSE_TIMEOUT = 10.0
#: Attempts per session before ``open`` gives up.
ATTEMPTS = 3


class IdleHandler:
    """ITunnelHandler for sessions that only stay connected (pings keep them alive)."""

    def __init__(self) -> None:
        self.up: set[TunnelProtocol] = set()
        self.lost = 0

    def hello_received(self, tunnel: TunnelProtocol, hello: dict) -> dict:
        raise Refusal(ErrorCode.PROTOCOL_ERROR, "the load generator accepts no tunnels")

    def tunnel_ready(self, tunnel: TunnelProtocol, info: dict) -> None:
        self.up.add(tunnel)

    def stream_opened(self, tunnel: TunnelProtocol, stream: object) -> None:
        raise Refusal(ErrorCode.REFUSED_STREAM, "the load generator serves no streams")

    def control_received(self, tunnel: TunnelProtocol, message: dict) -> None:
        pass

    def tunnel_lost(self, tunnel: TunnelProtocol, code: int, message: str) -> None:
        if tunnel in self.up:
            self.up.discard(tunnel)
            self.lost += 1


class LoadGenerator:
    def __init__(
        self,
        reactor,
        gateway: str,
        ca_file: str,
        sites: list[tuple[str, str]],
        per_site: int,
        concurrency: int,
    ) -> None:
        self.reactor = reactor
        self.endpoint = client_endpoint(reactor, gateway, Trust(ca_file=ca_file))
        self.sites = sites
        self.per_site = per_site
        self.handler = IdleHandler()
        self.semaphore = defer.DeferredSemaphore(concurrency)
        self.next_slot = 0

    def _make(self, slot: int) -> TunnelProtocol:
        site, secret = self.sites[slot // self.per_site]
        hello = {"site": site, "secret": secret, "edge_version": "bench", "connection": slot % self.per_site}
        return TunnelProtocol(Role.CLIENT, self.handler, self.reactor, hello=hello, local_name="bench")

    @defer.inlineCallbacks
    def _open_one(self, slot: int):
        last = None
        for _ in range(ATTEMPTS):
            try:
                tunnel = yield self.endpoint.connect(Factory.forProtocol(lambda: self._make(slot)))
                yield _first_of(tunnel.ready, tunnel.lost)
                if tunnel in self.handler.up:
                    return
                code, message = tunnel.lost.result if tunnel.lost.called else (None, "?")
                last = f"the gateway ended the session during the handshake: {code}: {message}"
            except Exception as e:
                last = str(e) or type(e).__name__
        raise RuntimeError(last)

    @defer.inlineCallbacks
    def open(self, count: int):
        if count > len(self.sites) * self.per_site:
            raise ValueError(f"{count} sessions need more than the {len(self.sites)} sites given")
        slots = range(self.next_slot, count)
        self.next_slot = max(self.next_slot, count)
        jobs = [self.semaphore.run(self._open_one, slot) for slot in slots]
        results = yield defer.DeferredList(jobs, consumeErrors=True)
        failures = [r.getErrorMessage() for ok, r in results if not ok]
        if failures:
            raise RuntimeError(f"{len(failures)} session(s) failed, first: {failures[0]}")
        return len(self.handler.up)

    def close(self) -> defer.Deferred:
        """Close every session: a clean TLS close, or an abort if that takes over 10 s."""
        self.next_slot = 0
        waits = []
        for tunnel in list(self.handler.up):
            transport = tunnel.transport
            # TunnelProtocol stays registered as the transport's producer, and Twisted's TLS
            # transport only sends close_notify once its producer is gone.
            transport.unregisterProducer()
            transport.loseConnection()
            abort = self.reactor.callLater(CLOSE_TIMEOUT, transport.abortConnection)
            tunnel.lost.addBoth(lambda result, call=abort: call.cancel() if call.active() else None)
            waits.append(tunnel.lost)
        return defer.DeferredList(waits, consumeErrors=True)


def _first_of(*deferreds: defer.Deferred) -> defer.Deferred:
    """Fires when the first of ``deferreds`` fires, without consuming their results."""
    done: defer.Deferred = defer.Deferred()

    def fire(result):
        if not done.called:
            done.callback(None)
        return result

    for d in deferreds:
        d.addBoth(fire)
    return done


class Commands(LineReceiver):
    delimiter = b"\n"

    def __init__(self, generator: LoadGenerator, finished: defer.Deferred) -> None:
        self.generator = generator
        self.finished = finished
        self.busy: defer.Deferred = defer.succeed(None)

    def lineReceived(self, line: bytes) -> None:
        words = line.decode().split()
        # One command at a time, in order.
        self.busy.addCallback(lambda _: self._run(words))

    @defer.inlineCallbacks
    def _run(self, words: list[str]):
        try:
            if words[:1] == ["open"] and len(words) == 2:
                d = self.generator.open(int(words[1]))
                d.addTimeout(OPEN_TIMEOUT, self.generator.reactor)
                up = yield d
                self._answer(f"ready {up}")
            elif words == ["close"]:
                yield self.generator.close()
                self._answer("closed")
            elif words == ["rss"]:
                self._answer(f"rss {_rss_kib()}")
            else:
                self._answer(f"error unknown command {' '.join(words)!r}")
        except Exception as e:
            self._answer(f"error {e or type(e).__name__}")

    def _answer(self, text: str) -> None:
        self.transport.write(text.encode() + b"\n")

    def connectionLost(self, reason: object = None) -> None:
        d = self.generator.close()
        d.addBoth(lambda _: self.finished.callback(None) if not self.finished.called else None)


def _rss_kib() -> int:
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def _raise_nofile(wanted: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, max(hard, wanted)))
        except (ValueError, OSError):
            resource.setrlimit(resource.RLIMIT_NOFILE, (min(wanted, hard), hard))


def main(reactor, argv: list[str]) -> defer.Deferred:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--gateway", required=True, help="tls:HOST:PORT or wss://HOST:PORT/PATH")
    parser.add_argument("--ca-file", required=True)
    parser.add_argument("--sites-file", required=True, help="JSON [[site_id, secret], ...]")
    parser.add_argument("--per-site", type=int, default=2, help="sessions per site")
    parser.add_argument("--concurrency", type=int, default=32, help="handshakes in flight at once")
    parser.add_argument("--nofile", type=int, default=8192, help="raise RLIMIT_NOFILE to this")
    args = parser.parse_args(argv)
    _raise_nofile(args.nofile)
    sites = [(site, secret) for site, secret in json.loads(Path(args.sites_file).read_text())]
    generator = LoadGenerator(reactor, args.gateway, args.ca_file, sites, args.per_site, args.concurrency)
    finished: defer.Deferred = defer.Deferred()
    stdio.StandardIO(Commands(generator, finished), reactor=reactor)
    return finished


if __name__ == "__main__":
    task.react(main, (sys.argv[1:],))

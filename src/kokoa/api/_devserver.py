"""A stand-alone admin API over a store, for development and for tests that need it in another process
(schemathesis): ``python -m kokoa.api._devserver --database URL [--port 0] [--key-file PATH]``.

With ``--key-file`` it creates an instance-wide API key (scope ``*``) and writes it to that file
(mode 0600). When it listens it prints one JSON line to stdout, ``{"port": N}``, and serves until
it is stopped (SIGINT or SIGTERM), logging warnings and errors to stderr. The status it shows and
the ports it calls free are made up: there is no gateway here (a TCP/UDP resource may only not use
the API's own port), and the console's live routes see a gateway without tunnels.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from typing import Any

from twisted.internet.defer import Deferred
from twisted.internet.endpoints import serverFromString
from twisted.internet.task import react
from twisted.logger import (
    FilteringLogObserver,
    LogLevel,
    LogLevelFilterPredicate,
    globalLogBeginner,
    textFileLogObserver,
)

from kokoa.store import Store, create_api_key

from ._app import DEFAULT_MAX_BODY, make_api_resource
from ._site import CappedSite


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m kokoa.api._devserver", description=__doc__)
    parser.add_argument("--database", required=True, help="sqlite:///path/kokoa.db or postgresql://...")
    parser.add_argument("--port", type=int, default=0, help="TCP port (0: any free port)")
    parser.add_argument("--interface", default="127.0.0.1")
    parser.add_argument("--key-file", help="create an instance-wide API key and write it here")
    parser.add_argument("--max-body", type=int, default=DEFAULT_MAX_BODY)
    return parser.parse_args(argv)


async def serve(reactor: Any, options: argparse.Namespace) -> None:
    store = await Store.open(options.database, reactor)
    if options.key_file:
        _, key = await store.run(create_api_key, "devserver", org_id=None, scopes=["*"])
        fd = os.open(options.key_file, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(key)
    own_port: list[int] = []
    from kokoa.gateway._console import idle_view

    resource = make_api_resource(
        store,
        reactor,
        status=lambda: {"gateway": "devserver", "sites": {}, "resources": []},
        port_available=lambda kind, port: port not in own_port,
        max_body=options.max_body,
        console=idle_view(store),
    )
    endpoint = serverFromString(reactor, f"tcp:{options.port}:interface={options.interface}")
    listening = await endpoint.listen(CappedSite(resource, max_body=options.max_body))
    own_port.append(listening.getHost().port)
    print(json.dumps({"port": own_port[0]}), flush=True)
    reactor.addSystemEventTrigger("before", "shutdown", listening.stopListening)
    await Deferred()  # serve until the reactor stops (the store closes itself then)


def main(argv: list[str] | None = None) -> None:
    options = parse_args(sys.argv[1:] if argv is None else argv)
    warnings = LogLevelFilterPredicate(defaultLogLevel=LogLevel.warn)
    observer = FilteringLogObserver(textFileLogObserver(sys.stderr), [warnings])
    globalLogBeginner.beginLoggingTo([observer], redirectStandardIO=False)
    react(lambda reactor: Deferred.fromCoroutine(serve(reactor, options)))


if __name__ == "__main__":
    main()

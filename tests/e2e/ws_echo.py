"""Autobahn WebSocket echo server and client for the end-to-end tests, each its own process.

    python ws_echo.py serve PORT_FILE
    python ws_echo.py client PORT HOST MESSAGE...   (ws://HOST:PORT/chat, connecting to 127.0.0.1)

The client sends each message (text), prints each echo on its own line, and exits 0 once all
came back (1 on failure or after 20 s).
"""

from __future__ import annotations

import os
import sys

from autobahn.twisted.websocket import (
    WebSocketClientFactory,
    WebSocketClientProtocol,
    WebSocketServerFactory,
    WebSocketServerProtocol,
)
from twisted.internet import reactor


class Echo(WebSocketServerProtocol):
    def onMessage(self, payload, isBinary):
        self.sendMessage(payload, isBinary)


class Client(WebSocketClientProtocol):
    def onOpen(self):
        self.pending = list(self.factory.messages)
        self.sendMessage(self.pending[0].encode())

    def onMessage(self, payload, isBinary):
        print(payload.decode(), flush=True)
        self.pending.pop(0)
        if self.pending:
            self.sendMessage(self.pending[0].encode())
        else:
            self.factory.ok = True
            self.sendClose()

    def onClose(self, wasClean, code, reason):
        if reactor.running:
            reactor.stop()


def serve(port_file: str) -> None:
    factory = WebSocketServerFactory()
    factory.protocol = Echo
    port = reactor.listenTCP(0, factory, interface="127.0.0.1")
    with open(port_file + ".tmp", "w") as f:
        f.write(str(port.getHost().port))
    os.replace(port_file + ".tmp", port_file)
    reactor.run()


def client(port: int, host: str, messages: list[str]) -> int:
    factory = WebSocketClientFactory(f"ws://{host}:{port}/chat")  # the Host header names the resource
    factory.protocol = Client
    factory.messages, factory.ok = messages, False
    reactor.connectTCP("127.0.0.1", port, factory)
    reactor.callLater(20, reactor.stop)
    reactor.run()
    return 0 if factory.ok else 1


if __name__ == "__main__":
    if sys.argv[1] == "serve":
        serve(sys.argv[2])
    else:
        sys.exit(client(int(sys.argv[2]), sys.argv[3], sys.argv[4:]))

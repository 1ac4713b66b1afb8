"""A small HTTP/1.1 upstream for the end-to-end tests, run as its own process.

    python http_upstream.py PORT_FILE

Streams everything (a 1 GiB upload is hashed as it arrives, a 1 GiB download is generated
as it goes), keeps connections alive, and answers:

- ``POST|PUT /sha256``: ``{"length": n, "sha256": hex, "conn": id}`` of the body;
- ``GET /bytes/N``: N bytes of a repeating pattern (``pattern(N)`` gives their digest);
- ``GET /chunked/N``: N chunks of ``chunk;``, chunked;
- ``GET /status/N``: an empty response with that status;
- anything else: ``{"method", "uri", "headers", "conn"}``, where ``conn`` numbers the
  upstream connection (keep-alive reuse shows as the same number).
"""

from __future__ import annotations

import hashlib
import itertools
import json
import socket
import sys
import threading

import httptools

PATTERN = bytes(range(256)) * 4096  # 1 MiB
_connections = itertools.count(1)


def pattern_sha256(n: int) -> str:
    digest = hashlib.sha256()
    full, rest = divmod(n, len(PATTERN))
    for _ in range(full):
        digest.update(PATTERN)
    digest.update(PATTERN[:rest])
    return digest.hexdigest()


class Connection:
    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.id = next(_connections)
        self.parser = httptools.HttpRequestParser(self)
        self.closing = False

    def serve(self) -> None:
        try:
            while not self.closing and (data := self.sock.recv(1 << 20)):
                self.parser.feed_data(data)
        except (OSError, httptools.HttpParserError):
            pass
        finally:
            self.sock.close()

    def on_message_begin(self) -> None:
        self.url, self.headers, self.digest, self.length = b"", [], hashlib.sha256(), 0

    def on_url(self, url: bytes) -> None:
        self.url += url

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name.decode("latin-1"), value.decode("latin-1")))

    def on_body(self, data: bytes) -> None:
        self.digest.update(data)
        self.length += len(data)

    def on_message_complete(self) -> None:
        method = self.parser.get_method().decode()
        path = self.url.decode().split("?")[0]
        keep_alive = self.parser.should_keep_alive()
        if path == "/sha256":
            self.json({"length": self.length, "sha256": self.digest.hexdigest(), "conn": self.id})
        elif path.startswith("/bytes/"):
            n = int(path.rsplit("/", 1)[1])
            self.send(
                b"HTTP/1.1 200 OK\r\nContent-Type: application/octet-stream\r\nContent-Length: %d\r\n\r\n" % n
            )
            if method != "HEAD":
                full, rest = divmod(n, len(PATTERN))
                for _ in range(full):
                    self.send(PATTERN)
                self.send(PATTERN[:rest])
        elif path.startswith("/chunked/"):
            n = int(path.rsplit("/", 1)[1])
            self.send(
                b"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n"
                + b"6\r\nchunk;\r\n" * n
                + b"0\r\n\r\n"
            )
        elif path.startswith("/status/"):
            status = int(path.rsplit("/", 1)[1])
            self.send(b"HTTP/1.1 %d Status\r\nContent-Length: 0\r\n\r\n" % status)
        else:
            seen = {"method": method, "uri": self.url.decode(), "headers": self.headers, "conn": self.id}
            self.json(seen)
        if not keep_alive:
            self.closing = True

    def json(self, value: dict) -> None:
        body = json.dumps(value).encode()
        self.send(
            b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: %d\r\n\r\n" % len(body)
            + body
        )

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)


def main() -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    with open(sys.argv[1] + ".tmp", "w") as f:
        f.write(str(listener.getsockname()[1]))
    import os

    os.replace(sys.argv[1] + ".tmp", sys.argv[1])
    while True:
        sock, _ = listener.accept()
        threading.Thread(target=Connection(sock).serve, daemon=True).start()


if __name__ == "__main__":
    main()

"""Load workers for the throughput benchmark, each run as its own process (no GIL sharing
with the process that orchestrates, nor with each other).

``serve``  listens on two loopback ports and prints them as one JSON line:
           - the *sink* port reads and discards everything, then, at EOF, answers with the
             number of bytes it received (ASCII) and closes;
           - the *source* port sends ``--size`` bytes, half-closes, reads until EOF, closes.
``send``   connects to a sink, sends ``--size`` bytes in ``--block`` blocks with sendall,
           half-closes and waits for the sink's byte count and EOF; prints JSON with the time.
``recv``   connects to a source and reads until EOF; prints JSON with the time.

Only the standard library: this file must start fast and stay small in memory.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import sys
import threading
import time

READ_SIZE = 1 << 20


def _drain(conn: socket.socket, buffer: bytearray) -> int:
    """Read until EOF; returns the number of bytes read."""
    view = memoryview(buffer)
    total = 0
    while n := conn.recv_into(view):
        total += n
    return total


def _serve_sink(conn: socket.socket) -> None:
    buffer = bytearray(READ_SIZE)
    with conn:
        try:
            total = _drain(conn, buffer)
            conn.sendall(str(total).encode())
            conn.shutdown(socket.SHUT_WR)
        except OSError:
            pass


def _serve_source(conn: socket.socket, size: int, block: bytes) -> None:
    buffer = bytearray(READ_SIZE)
    view = memoryview(block)
    with conn:
        try:
            sent = 0
            while sent < size:
                n = min(len(block), size - sent)
                conn.sendall(view[:n])
                sent += n
            conn.shutdown(socket.SHUT_WR)
            _drain(conn, buffer)
        except OSError:
            pass


def _accept_loop(listener: socket.socket, serve, *args) -> None:
    while True:
        try:
            conn, _ = listener.accept()
        except OSError:
            return
        conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        threading.Thread(target=serve, args=(conn, *args), daemon=True).start()


def serve(args: argparse.Namespace) -> None:
    block = os.urandom(args.block)
    listeners = {}
    for name in ("sink", "source"):
        s = socket.socket()
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("127.0.0.1", 0))
        s.listen(128)
        listeners[name] = s
    threading.Thread(target=_accept_loop, args=(listeners["sink"], _serve_sink), daemon=True).start()
    threading.Thread(
        target=_accept_loop, args=(listeners["source"], _serve_source, args.size, block), daemon=True
    ).start()
    print(json.dumps({name: s.getsockname()[1] for name, s in listeners.items()}), flush=True)
    # Until the orchestrator closes our stdin (or kills us), bounded by --lifetime.
    stdin_closed = threading.Event()

    def watch_stdin() -> None:
        sys.stdin.read()
        stdin_closed.set()

    threading.Thread(target=watch_stdin, daemon=True).start()
    stdin_closed.wait(args.lifetime)


def send(args: argparse.Namespace) -> dict:
    block = os.urandom(args.block)
    view = memoryview(block)
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    start = time.perf_counter()
    sent = 0
    with sock:
        while sent < args.size:
            n = min(len(block), args.size - sent)
            sock.sendall(view[:n])
            sent += n
        sock.shutdown(socket.SHUT_WR)
        answer = b""
        while chunk := sock.recv(64):
            answer += chunk
        elapsed = time.perf_counter() - start
    received = int(answer) if answer.isdigit() else None
    if received != args.size:
        raise SystemExit(f"the sink received {received} bytes of {args.size}")
    return {"bytes": sent, "seconds": elapsed}


def recv(args: argparse.Namespace) -> dict:
    buffer = bytearray(READ_SIZE)
    sock = socket.create_connection(("127.0.0.1", args.port), timeout=args.timeout)
    start = time.perf_counter()
    with sock:
        total = _drain(sock, buffer)
        elapsed = time.perf_counter() - start
    if total != args.size:
        raise SystemExit(f"received {total} bytes of {args.size}")
    return {"bytes": total, "seconds": elapsed}


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("command", choices=["serve", "send", "recv"])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--size", type=int, required=True, help="bytes to send or expect")
    parser.add_argument("--block", type=int, default=256 * 1024, help="bytes per sendall")
    parser.add_argument("--timeout", type=float, default=600.0, help="socket timeout, seconds")
    parser.add_argument("--lifetime", type=float, default=3600.0, help="serve: exit after this long")
    args = parser.parse_args()
    if args.command == "serve":
        serve(args)
        return
    result = send(args) if args.command == "send" else recv(args)
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()

"""End to end: real `twistd kokoa` and `twistd kokoa-edge` processes, real TLS, real sockets."""

from __future__ import annotations

import signal
import socket
import ssl
import threading
import time

import pytest

from kokoa import wire

from .harness import (
    Deployment,
    EchoTarget,
    HashTarget,
    established_connections,
    random_blocks,
    transfer,
    wait_for,
)

pytestmark = pytest.mark.e2e
MiB = 1 << 20
TRANSPORTS = ["tls", "wss"]


@pytest.fixture
def deployment(tmp_path):
    d = Deployment(tmp_path)
    yield d
    d.stop()


@pytest.fixture
def echo():
    target = EchoTarget()
    yield target
    target.close()


def echo_once(port: int, payload: bytes = b"hello kokoa", timeout: float = 10) -> bytes:
    """Send, half-close, read to the end. A connection the gateway refused (closed or
    reset, never left hanging) reads as b""."""
    data = b""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=timeout) as s:
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            while chunk := s.recv(65536):
                data += chunk
    except (ConnectionResetError, BrokenPipeError):
        pass
    return data


def start(
    deployment: Deployment, transport: str, target_port: int, edge_args=(), connections: int = 2
) -> int:
    deployment.add_site("home")
    port = deployment.add_tcp_resource("svc", "home", target_port)
    deployment.start_gateway()
    deployment.start_edge("home", transport, extra=["--connections", str(connections), *edge_args])
    deployment.wait_tunnels("home", connections)
    return port


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_64_mib_each_way_with_matching_sha256(deployment, transport):
    target = HashTarget(send_size=64 * MiB)
    try:
        port = start(deployment, transport, target.port)
        result = transfer(port, 64 * MiB)
        wait_for(lambda: target.results, "the target to finish")
        assert result["bytes"] == 64 * MiB
        assert target.results[0]["bytes"] == 64 * MiB
        assert target.results[0]["received"] == result["sent"]
        assert result["received"] == target.results[0]["sent"]
    finally:
        target.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_200_concurrent_streams(deployment, transport, echo):
    port = start(deployment, transport, echo.port)
    results: dict[int, bool] = {}
    barrier = threading.Barrier(200)

    def client(n: int) -> None:
        payload = bytes([n % 256]) * (32 * 1024 + n)
        with socket.create_connection(("127.0.0.1", port), timeout=60) as s:
            barrier.wait()  # all 200 open at once before any finishes
            s.sendall(payload)
            s.shutdown(socket.SHUT_WR)
            data = b""
            while chunk := s.recv(65536):
                data += chunk
        results[n] = data == payload

    threads = [threading.Thread(target=client, args=(n,)) for n in range(200)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    assert len(results) == 200 and all(results.values())
    assert echo.connections == 200


def test_stalled_reader_does_not_stall_others_and_stays_within_window(deployment):
    flood = HashTarget(send_size=512 * MiB)  # far more than any buffer on the way
    echo = EchoTarget()
    try:
        deployment.add_site("home")
        flood_port = deployment.add_tcp_resource("flood", "home", flood.port)
        echo_port = deployment.add_tcp_resource("echo", "home", echo.port)
        deployment.start_gateway()
        deployment.start_edge("home", "tls", extra=["--connections", "1"])
        deployment.wait_tunnels("home", 1)
        rss_before = deployment.gateway.rss_kib()

        stalled = socket.create_connection(("127.0.0.1", flood_port))
        stalled.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 64 * 1024)
        # Never read from `stalled`. Meanwhile the other stream on the same tunnel flows.
        time.sleep(1.0)
        for _ in range(20):
            payload = b"x" * (256 * 1024)
            assert echo_once(echo_port, payload, timeout=20) == payload

        def flood_stream():
            tunnels = deployment.status()["sites"]["home"]["tunnels"]
            streams = [s for t in tunnels for s in t["stream_detail"]]
            return streams[0] if streams else None

        stream = wait_for(flood_stream, "the flood stream to show up")
        wait_for(
            lambda: flood_stream()["buffered_inbound"] > 0, "the gateway to buffer for the stalled reader"
        )
        for _ in range(10):
            s = flood_stream()
            assert 0 < s["buffered_inbound"] <= s["receive_window"], s
            time.sleep(0.1)
        # Nothing like the 512 MiB the target is trying to send piles up in the gateway.
        assert deployment.gateway.rss_kib() - rss_before < 48 * 1024
        assert stream["receive_window"] <= 16 * MiB
        stalled.close()
    finally:
        flood.close()
        echo.close()


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_kill_9_edge_closes_connections_and_restart_restores(deployment, transport, echo):
    port = start(deployment, transport, echo.port)
    held = socket.create_connection(("127.0.0.1", port), timeout=10)
    held.sendall(b"ping")
    assert held.recv(4) == b"ping"
    deployment.edges[0].kill()  # SIGKILL: no goodbye from the edge
    held.settimeout(10)
    try:
        assert held.recv(1) == b""  # closed, not left hanging
    except ConnectionResetError:
        pass  # an abort is a close too
    held.close()
    deployment.gateway.wait_log("tunnel closed")
    wait_for(lambda: deployment.tunnels("home") == 0, "the gateway to forget the dead edge")
    # While the site is offline, new connections are closed with a logged reason.
    assert echo_once(port, timeout=10) == b""
    deployment.gateway.wait_log("is offline")

    deployment.start_edge("home", transport)
    deployment.wait_tunnels("home", 2)
    assert echo_once(port) == b"hello kokoa"


def test_gateway_restart_edge_reconnects_on_its_own(deployment, echo):
    port = start(deployment, "tls", echo.port)
    assert echo_once(port) == b"hello kokoa"
    deployment.gateway.stop()
    deployment.edges[0].wait_log("reconnecting")
    deployment.start_gateway()
    deployment.wait_tunnels("home", 2)
    assert echo_once(port) == b"hello kokoa"


@pytest.mark.parametrize("transport", TRANSPORTS)
def test_wrong_secret_is_refused_with_a_clear_message(deployment, transport):
    deployment.add_site("home")
    deployment.start_gateway()
    edge = deployment.start_edge("home", transport, secret="not-the-secret")
    edge.wait_log("the gateway refused this edge: AUTH_FAILED")
    assert "check --site and the secret" in edge.log_text()
    deployment.gateway.wait_log("refused edge")
    assert deployment.tunnels("home") == 0
    # Refused connections are closed, not left open: retries do not pile up.
    edge.wait_log("Scheduling retry 2")
    time.sleep(1)
    assert (
        established_connections(deployment.tunnel_port if transport == "tls" else deployment.ws_port) <= 2 * 2
    )


def test_edge_exits_promptly_on_sigterm(deployment, echo):
    port = start(deployment, "tls", echo.port)
    assert echo_once(port) == b"hello kokoa"
    edge = deployment.edges[0]
    edge.proc.send_signal(signal.SIGTERM)
    # twistd ends itself with the signal it received, so that its parent sees it.
    assert edge.exited_within(10) in (0, -signal.SIGTERM), edge.log_text()[-2000:]
    assert "reconnecting" not in edge.log_text().split("Received SIGTERM")[1]
    assert "Traceback" not in edge.log_text()


def test_gateway_sigterm_lets_open_transfers_finish(deployment):
    target = HashTarget(send_size=32 * MiB)
    try:
        port = start(deployment, "tls", target.port)
        result = {}
        worker = threading.Thread(target=lambda: result.update(transfer(port, 32 * MiB)))
        worker.start()
        wait_for(lambda: target.connections, "the transfer to start")
        deployment.gateway.proc.send_signal(signal.SIGTERM)
        worker.join(60)
        wait_for(lambda: target.results, "the target to finish")
        assert result["bytes"] == 32 * MiB
        assert result["received"] == target.results[0]["sent"]
        assert deployment.gateway.exited_within(15) in (0, -signal.SIGTERM)
    finally:
        target.close()


def test_a_resource_whose_port_is_taken_is_logged_and_the_others_are_served(deployment, echo):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        taken = squatter.getsockname()[1]
        deployment.add_site("home")
        deployment.resources.append(
            {"name": "squatted", "site": "home", "port": taken, "target": f"127.0.0.1:{echo.port}"}
        )
        free = deployment.add_tcp_resource("free", "home", echo.port)
        deployment.start_gateway()
        deployment.gateway.wait_log("resource 'squatted' is not served: cannot listen on")
        deployment.start_edge("home", "tls")
        deployment.wait_tunnels("home", 2)
        assert echo_once(free) == b"hello kokoa"


def test_unknown_target_is_refused_and_other_streams_work(deployment, echo):
    other = EchoTarget()
    try:
        deployment.add_site("home")
        allowed = deployment.add_tcp_resource("allowed", "home", echo.port)
        forbidden = deployment.add_tcp_resource("forbidden", "home", other.port)
        deployment.start_gateway()
        deployment.start_edge("home", "tls", extra=["--allow", f"127.0.0.1:{echo.port}"])
        deployment.wait_tunnels("home", 2)
        assert echo_once(forbidden) == b""
        deployment.gateway.wait_log("UNKNOWN_TARGET")
        deployment.edges[0].wait_log("is outside this edge's --allow list")
        assert other.connections == 0
        assert echo_once(allowed) == b"hello kokoa"
    finally:
        other.close()


def test_target_that_refuses(deployment, echo):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        closed_port = s.getsockname()[1]  # nothing listens here once closed
    deployment.add_site("home")
    refused = deployment.add_tcp_resource("refused", "home", closed_port)
    working = deployment.add_tcp_resource("working", "home", echo.port)
    deployment.start_gateway()
    deployment.start_edge("home", "tls")
    deployment.wait_tunnels("home", 2)
    assert echo_once(refused) == b""
    deployment.gateway.wait_log("CONNECT_REFUSED")
    deployment.edges[0].wait_log(f"connection to 127.0.0.1:{closed_port} refused")
    assert echo_once(working) == b"hello kokoa"


def test_full_stream_table(deployment, echo, tmp_path):
    config = tmp_path / "edge.toml"
    config.write_text("connections = 1\n[limits]\nmax_concurrent_streams = 2\n")
    port = start(deployment, "tls", echo.port, edge_args=["--config", str(config)], connections=1)
    held = [socket.create_connection(("127.0.0.1", port), timeout=10) for _ in range(2)]
    for s in held:
        s.sendall(b"x")
        assert s.recv(1) == b"x"
    assert echo_once(port) == b""  # the third is refused
    deployment.gateway.wait_log("the edge allows 2 concurrent streams per tunnel")
    for s in held:  # the two open streams are unaffected
        s.sendall(b"y")
        assert s.recv(1) == b"y"
        s.close()
    wait_for(lambda: echo_once(port) == b"hello kokoa", "a free slot")


def raw_tunnel(deployment: Deployment) -> ssl.SSLSocket:
    context = ssl.create_default_context(cafile=str(deployment.data / "tls" / "ca.pem"))
    sock = socket.create_connection(("127.0.0.1", deployment.tunnel_port), timeout=10)
    return context.wrap_socket(sock, server_hostname="localhost")


def read_goaway(sock: ssl.SSLSocket) -> tuple[int, str]:
    decoder = wire.FrameDecoder(1 << 20, 1 << 20)
    while True:
        data = sock.recv(65536)
        assert data, "closed without a GOAWAY"
        for frame in decoder.feed(data):
            if frame.type == wire.FrameType.GOAWAY:
                code = int.from_bytes(frame.payload[4:6], "big")
                return code, frame.payload[6:].decode()


def test_unsupported_protocol_version_gets_a_clear_error(deployment):
    deployment.add_site("home")
    deployment.start_gateway()
    with raw_tunnel(deployment) as sock:
        hello = wire.encode_frame(1, wire.FrameType.HELLO, 0, 0, b'{"versions":[99],"site":"home"}')
        sock.sendall(wire.PREFACE + hello)
        code, message = read_goaway(sock)
    assert code == wire.ErrorCode.UNSUPPORTED_VERSION
    assert "[1]" in message and "[99]" in message
    deployment.gateway.wait_log("UNSUPPORTED_VERSION")


def test_malformed_frame_gets_a_protocol_error(deployment):
    deployment.add_site("home")
    deployment.start_gateway()
    with raw_tunnel(deployment) as sock:
        sock.sendall(wire.PREFACE + b"\x01\x01\x00\x00\x00\x00\x00\x00\x00\x00\x00\x05{bad}")
        code, message = read_goaway(sock)
    assert code == wire.ErrorCode.PROTOCOL_ERROR
    assert "not valid JSON" in message
    deployment.gateway.wait_log("PROTOCOL_ERROR")


def test_many_small_writes_arrive_in_order(deployment, echo):
    port = start(deployment, "tls", echo.port)
    blocks = list(random_blocks(4 * MiB, b"order", block=1000))
    with socket.create_connection(("127.0.0.1", port), timeout=30) as s:

        def send() -> None:
            for block in blocks:
                s.sendall(block)
            s.shutdown(socket.SHUT_WR)

        t = threading.Thread(target=send)
        t.start()
        data = bytearray()
        while chunk := s.recv(65536):
            data += chunk
        t.join()
    assert bytes(data) == b"".join(blocks)


def test_a_tunnel_port_in_use_stops_the_start_with_a_clear_error(deployment):
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", deployment.tunnel_port))
        squatter.listen(1)
        config = deployment.write_config()
        from .harness import Process

        gateway = Process("gateway", ["kokoa", "--config", str(config)], deployment.root / "gw.log").start()
        assert gateway.exited_within(20) == 1
        assert f"cannot listen on tcp:{deployment.tunnel_port}" in gateway.log_text()

"""Schemathesis against the live API (a dev server in a subprocess, over SQLite), with its own OpenAPI
document: no 5xx, and every response's status, content type and body as the document says.

The run is bounded (a few examples per operation, a time budget for the fuzzing and stateful phases
that follow the document's links: create, then read, change and delete what was created).

Routes that answer with Server-Sent Events (``stream=True`` in the route table: an organization's events,
the request inspector) are left out: a stream that works never ends, so every example would wait for
the request timeout. Their refusals (401, 403, 404, 503) are tested in tests/api/test_console_api.py.
"""

from __future__ import annotations

import json
import os
import select
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.sans_io  # subprocesses only: no reactor in this process

CHECKS = "not_a_server_error,response_schema_conformance,status_code_conformance,content_type_conformance"
#: Seconds for the whole run (the coverage phase takes ~10 s; fuzzing and stateful testing the rest).
TIME_BUDGET = 20


def _schemathesis() -> str:
    pytest.importorskip("schemathesis", reason="schemathesis is in the test extra: pip install -e '.[test]'")
    found = Path(sys.executable).with_name("schemathesis")
    return str(found) if found.exists() else (shutil.which("schemathesis") or "schemathesis")


@pytest.fixture
def devserver(tmp_path: Path) -> Iterator[tuple[int, str, Path]]:
    """The API in another process: its port, an instance-wide key, and the file of its log."""
    key_file, log = tmp_path / "key", tmp_path / "devserver.log"
    command = [
        sys.executable,
        "-m",
        "kokoa.api._devserver",
        "--database",
        f"sqlite:///{tmp_path / 'kokoa.db'}",
        "--key-file",
        str(key_file),
    ]
    with log.open("wb") as stderr:
        process = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=stderr)
    try:
        assert process.stdout is not None
        ready, _, _ = select.select([process.stdout], [], [], 30)
        line = process.stdout.readline() if ready else b""
        assert line, f"the dev server did not start: {log.read_text()}"
        yield json.loads(line)["port"], key_file.read_text(), log
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stdout.close()  # type: ignore[union-attr]


def test_schemathesis_finds_no_server_error_and_no_schema_mismatch(devserver, tmp_path):
    port, key, log = devserver
    from kokoa.api._routes import ROUTES

    streams = [route.operation_id for route in ROUTES if route.stream]
    command = [
        _schemathesis(),
        "run",
        f"http://127.0.0.1:{port}/api/v1/openapi.json",
        *(f"--exclude-operation-id={operation_id}" for operation_id in streams),
        "--checks",
        CHECKS,
        "--header",
        f"Authorization: Bearer {key}",
        "--max-examples",
        "5",
        "--max-time",
        str(TIME_BUDGET),
        "--seed",
        "1",
        "--request-timeout",
        "10",
        "--output-truncate",
        "false",
    ]
    run = subprocess.run(
        command,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=110,
        env={**os.environ, "NO_COLOR": "1"},
    )
    output = run.stdout + run.stderr
    assert run.returncode == 0, output[-20000:]
    # (Warnings, such as operations that mostly answered 404 or 422 to generated data, are fine.)
    assert "passed" in output and "❌" not in output, output[-20000:]
    errors = log.read_text()
    assert "Traceback" not in errors and "Unhandled" not in errors, errors

"""Shared fixtures.

pytest-twisted, unlike trial, does not fail a test on an error logged from a
Deferred or on a reactor left dirty: the autouse fixture below does both.
"""

from __future__ import annotations

import gc

import pytest
import pytest_twisted
from twisted.internet import reactor as _reactor
from twisted.internet import task
from twisted.logger import globalLogPublisher


class _ErrorCollector:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def __call__(self, event: dict) -> None:
        if event.get("isError") or event.get("log_failure") is not None:
            failure = event.get("log_failure")
            text = failure.getTraceback() if failure is not None else str(event.get("log_format"))
            self.errors.append(text)


@pytest.fixture
def expect_logged_errors():
    """Use in a test that logs errors on purpose; returns the list of them."""
    return _collector.errors


_collector = _ErrorCollector()


def _selectables() -> set:
    return set(_reactor.getReaders()) | set(_reactor.getWriters())


@pytest.fixture(autouse=True)
def _clean_reactor(request):
    """Fail a test that logs an unhandled error or leaves sockets open."""
    if request.node.get_closest_marker("sans_io") is not None:
        yield  # pure code: no reactor, no Deferreds to collect
        return
    _collector.errors = []
    globalLogPublisher.addObserver(_collector)
    before = _selectables()
    calls_before = set(_reactor.getDelayedCalls())
    yield
    gc.collect()  # unhandled errors in garbage Deferreds are logged on collection
    globalLogPublisher.removeObserver(_collector)
    leftovers = _wait_for_selectables(before)
    errors = [] if "expect_logged_errors" in request.fixturenames else list(_collector.errors)
    if errors:
        pytest.fail("errors were logged during the test:\n" + "\n".join(errors), pytrace=False)
    if leftovers:
        pytest.fail(f"reactor left dirty: open selectables {leftovers!r}", pytrace=False)
    for call in set(_reactor.getDelayedCalls()) - calls_before:
        if call.active():
            call.cancel()


def _wait_for_selectables(before: set) -> list:
    """Give closing connections a moment to go away (they close asynchronously)."""
    for _ in range(50):
        leftovers = [s for s in _selectables() - before if not _is_reactor_internal(s)]
        if not leftovers:
            return []
        pytest_twisted.blockon(task.deferLater(_reactor, 0.02, lambda: None))
    return leftovers


def _is_reactor_internal(selectable) -> bool:
    name = type(selectable).__name__
    return name in {"_UnixWaker", "_SocketWaker", "_SIGCHLDWaker", "Waker"}

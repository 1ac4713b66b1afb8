import pytest_twisted
from twisted.internet import defer, reactor, task


@pytest_twisted.inlineCallbacks
def test_reactor_runs():
    result = yield task.deferLater(reactor, 0, lambda: 42)
    assert result == 42


def test_failing_deferred_is_caught(expect_logged_errors):
    d = defer.fail(ValueError("boom"))
    del d
    import gc

    gc.collect()
    assert any("boom" in e for e in expect_logged_errors)

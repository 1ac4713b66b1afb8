"""kokoa.wire is sans-IO: its tests need no reactor checks (see tests/conftest.py)."""

import pytest


def pytest_collection_modifyitems(items):
    for item in items:
        if "tests/wire/" in str(item.path):
            item.add_marker(pytest.mark.sans_io)

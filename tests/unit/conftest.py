"""Fixtures of the unit tests."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest


@pytest.fixture
def server_in_beijing(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """The machine's own clock set to Beijing time, as an operator's servers may well be: times
    must still be stored in UTC (a conversion to "local time" would show +08:00)."""
    monkeypatch.setenv("TZ", "Asia/Shanghai")
    time.tzset()
    yield
    monkeypatch.undo()
    time.tzset()

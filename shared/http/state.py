"""What an app keeps for its requests (`create_service_app` sets it on `app.state`), read
the same way by the API's dependencies and the console's pages."""

from __future__ import annotations

from fastapi import Request

from shared.domain.clock import Clock
from shared.settings import Settings


def clock_of(request: Request) -> Clock:
    """The app's clock (injected: tests move it)."""
    clock: Clock = request.app.state.clock
    return clock


def settings_of(request: Request) -> Settings:
    settings: Settings = request.app.state.settings
    return settings

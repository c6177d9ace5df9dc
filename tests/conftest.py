"""Fixtures every test may use. Real-server fixtures live in tests/services/ and are registered here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from hypothesis import settings

from tests.servers import StallServer, free_port
from tests.services import SERVICES

pytest_plugins: list[str] = [f"tests.services.{name}" for name in SERVICES]

# property tests check behaviour, not speed: on a shared, loaded machine a 200 ms per-example deadline fails at random
settings.register_profile("no-deadline", deadline=None)
settings.load_profile("no-deadline")


@pytest.fixture
def stall() -> Iterator[StallServer]:
    server = StallServer()
    yield server
    server.close()


@pytest.fixture
def closed_port() -> int:
    return free_port()

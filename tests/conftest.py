"""Fixtures every test may use. Real-server fixtures live in tests/services/ and are registered here."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from tests.servers import StallServer, free_port

pytest_plugins: list[str] = [
    "tests.services.postgres",
    "tests.services.cassandra",
    "tests.services.azurite",
    "tests.services.s3",
    "tests.services.versitygw",
]


@pytest.fixture
def stall() -> Iterator[StallServer]:
    server = StallServer()
    yield server
    server.close()


@pytest.fixture
def closed_port() -> int:
    return free_port()

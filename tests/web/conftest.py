"""Fixtures for the web tests: real app instances over real local targets."""

from __future__ import annotations

import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

with warnings.catch_warnings():  # starlette's notice about a future httpx successor, irrelevant here
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

from app.config import Settings
from app.main import create_app
from tests.web.helpers import PASSWORD, SECRET_KEY, BlackholePort, MakeClient, write_targets


@pytest.fixture
def make_client(tmp_path: Path) -> Iterator[MakeClient]:
    """Build a running app (lifespan entered) over `targets`; settings default to a valid production setup."""
    clients: list[TestClient] = []

    def make(
        targets: list[dict[str, Any]] | None = None, base_url: str = "http://testserver", **overrides: Any
    ) -> TestClient:
        config = write_targets(tmp_path, targets) if targets is not None else None
        values: dict[str, Any] = {
            "config": config,
            "auth_password": PASSWORD,
            "secret_key": SECRET_KEY,
            "run_on_start": False,
            **overrides,
        }
        client = TestClient(create_app(Settings(**values)), base_url=base_url, follow_redirects=False)
        client.__enter__()
        clients.append(client)
        return client

    yield make
    for client in clients:
        client.__exit__(None, None, None)


@pytest.fixture
def blackhole() -> Iterator[BlackholePort]:
    port = BlackholePort()
    yield port
    port.close()

"""Fixtures every test may use. Real-server fixtures live in tests/services/ and are registered here."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from aiosmtpd.controller import Controller
from hypothesis import settings

from tests.pipeline.helpers import Receiver, Request
from tests.servers import ClosedPort, SmtpInbox, StallServer, free_port
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
def closed_port() -> Iterator[int]:
    with ClosedPort() as closed:
        yield closed.port


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    state = Receiver(url="")

    class Handler(BaseHTTPRequestHandler):
        def _handle(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(self.command, self.path, dict(self.headers.items()), self.rfile.read(length))
            state.requests.append(request)
            status, headers, body = state.respond(request)
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(body)

        do_GET = do_POST = do_DELETE = _handle

        def log_message(self, format: str, *args: object) -> None:  # keep test output clean
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    state.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield state
    server.shutdown()
    server.server_close()


@pytest.fixture
def smtp() -> Iterator[tuple[int, SmtpInbox]]:
    """A real SMTP server on 127.0.0.1: its port and the inbox of what it received."""
    inbox = SmtpInbox()
    port = free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield port, inbox
    controller.stop()

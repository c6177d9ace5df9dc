"""Small real servers on 127.0.0.1 for tests: a listener that accepts and never answers, a closed port, and a relay
that breaks or stalls chosen answers of a real server, and an SMTP inbox."""

from __future__ import annotations

import socket
import threading
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from email import message_from_bytes, policy
from email.message import Message
from typing import Any


def free_port() -> int:
    """A port that nothing listens on right now (bound once, then released): for a server about to listen on it.
    A port that must stay closed is a ClosedPort."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class ClosedPort:
    """A port on 127.0.0.1 that refuses every connection for as long as this lives: bound, never listening, so no
    server and no client's ephemeral port can take it meanwhile (a released port can be handed out again)."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> ClosedPort:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class StallServer:
    """Accepts every connection and never sends a byte: the stand-in for a black-holed or hung service."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self._sock = socket.socket()
        self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._sock.bind((host, 0))
        self._sock.listen(512)
        self.port = int(self._sock.getsockname()[1])
        self._held: list[socket.socket] = []
        self._closed = threading.Event()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while not self._closed.is_set():
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            self._held.append(conn)  # keep it open and silent

    def close(self) -> None:
        self._closed.set()
        self._sock.close()
        for conn in self._held:
            conn.close()


@contextmanager
def stall_server() -> Iterator[StallServer]:
    server = StallServer()
    try:
        yield server
    finally:
        server.close()


class CuttingProxy:
    """A TCP relay to a server on 127.0.0.1 that cuts the answers to requests starting with `request` (e.g. b"GET /").

    Such an answer is passed on up to its headers and `body_bytes` of its body (with `body_bytes=None`, not at all);
    then the connection is closed, or with `hang=True` held open and silent: a gateway that breaks or stalls
    transfers, while every other request reaches the real server. With `times`, only the first `times` such
    answers are cut.
    """

    def __init__(
        self,
        upstream_port: int,
        request: bytes,
        *,
        body_bytes: int | None = None,
        hang: bool = False,
        times: int | None = None,
    ) -> None:
        self._upstream_port, self._request, self._body_bytes, self._hang = upstream_port, request, body_bytes, hang
        self._times = times
        self._matched = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self.cut = 0  # answers cut so far
        self._held: list[socket.socket] = []
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.create_connection(("127.0.0.1", self._upstream_port))
            self._held += [client, upstream]
            cutting = threading.Event()
            threading.Thread(target=self._requests, args=(client, upstream, cutting), daemon=True).start()
            threading.Thread(target=self._answers, args=(upstream, client, cutting), daemon=True).start()

    def _requests(self, client: socket.socket, upstream: socket.socket, cutting: threading.Event) -> None:
        # a client sends its next request only after the previous answer: each request starts a fresh read
        while data := _receive(client):
            if data.startswith(self._request) and (self._times is None or self._matched < self._times):
                self._matched += 1
                cutting.set()
            with suppress(OSError):
                upstream.sendall(data)
        with suppress(OSError):
            upstream.shutdown(socket.SHUT_WR)

    def _answers(self, upstream: socket.socket, client: socket.socket, cutting: threading.Event) -> None:
        answer = b""
        while data := _receive(upstream):
            if not cutting.is_set():
                try:
                    client.sendall(data)
                except OSError:
                    break
                continue
            answer += data
            end = answer.find(b"\r\n\r\n")
            if self._body_bytes is None or (end >= 0 and len(answer) >= end + 4 + self._body_bytes):
                break
        if cutting.is_set():
            self.cut += 1
            if self._body_bytes is not None:
                with suppress(OSError):
                    client.sendall(answer[: answer.find(b"\r\n\r\n") + 4 + self._body_bytes])
            if self._hang:
                while _receive(upstream):  # the rest is dropped until one side gives up
                    pass
                return
        for sock in (client, upstream):
            with suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self._listener.close()
        for sock in self._held:
            sock.close()


def _receive(sock: socket.socket) -> bytes:
    try:
        return sock.recv(65536)
    except OSError:
        return b""


class SmtpInbox:
    """An aiosmtpd handler that keeps every message it receives, parsed."""

    def __init__(self) -> None:
        self.messages: list[Message] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.messages.append(message_from_bytes(envelope.content, policy=policy.default))
        return "250 OK"

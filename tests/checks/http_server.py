"""A real HTTP or HTTPS server on 127.0.0.1 whose behaviour is one plain function: request in, reply out."""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from socket import socket
from typing import Any

from tests.certs import ServerCert


@dataclass(frozen=True)
class Request:
    method: str
    path: str  # with the query string
    headers: dict[str, str]  # names in lower case
    body: bytes


@dataclass(frozen=True)
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)


Handler = Callable[[Request], Reply]


class HttpServer:
    """Serves `handler` on 127.0.0.1 (over TLS with `cert`) in a thread, and keeps every request it saw."""

    def __init__(
        self, handler: Handler, cert: ServerCert | None = None, *, max_version: ssl.TLSVersion | None = None
    ) -> None:
        self.handler = handler
        self.requests: list[Request] = []
        context = None
        if cert is not None:
            context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
            context.load_cert_chain(cert.cert_file, cert.key_file)
            if max_version is not None:
                context.maximum_version = max_version
        self._server = _Server(("127.0.0.1", 0), _handler_class(self), context)
        self.port = int(self._server.server_address[1])
        scheme = "https" if cert else "http"
        self.url = f"{scheme}://127.0.0.1:{self.port}"
        threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True).start()

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def __enter__(self) -> HttpServer:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class _Server(ThreadingHTTPServer):
    daemon_threads = True

    def __init__(self, address: tuple[str, int], handler: Any, context: ssl.SSLContext | None) -> None:
        self.context = context
        super().__init__(address, handler)

    def finish_request(self, request: Any, client_address: Any) -> None:
        # the handshake runs in the connection's own thread, so a client that rejects the certificate
        # (the point of many tests) never blocks the accept loop
        if self.context is not None:
            try:
                request = self.context.wrap_socket(request, server_side=True)
            except (ssl.SSLError, OSError):
                return
        super().finish_request(request, client_address)

    def handle_error(self, request: socket | tuple[bytes, socket], client_address: Any) -> None:
        """Clients hanging up mid-request are routine in these tests; stay quiet."""


def _handler_class(server: HttpServer) -> type[BaseHTTPRequestHandler]:
    class _Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version, sys_version = "test-server/1.0", ""  # the Server header

        def serve(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            request = Request(
                self.command,
                self.path,
                {name.lower(): value for name, value in self.headers.items()},
                self.rfile.read(length),
            )
            server.requests.append(request)
            reply = server.handler(request)
            self.send_response(reply.status)
            for name, value in reply.headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(reply.body)))
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(reply.body)

        do_GET = do_POST = do_HEAD = do_PUT = do_DELETE = do_OPTIONS = do_PATCH = serve

        def log_message(self, format: str, *args: Any) -> None:
            """No access log on the test output."""

    return _Handler

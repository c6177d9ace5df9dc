"""A TLS-inspecting CONNECT proxy on 127.0.0.1, as corporate egress proxies are: it answers CONNECT, presents its
own certificate for the destination (issued by its inspection CA), and relays the decrypted bytes to the real
destination over a second TLS connection. Destinations must be on 127.0.0.1."""

from __future__ import annotations

import contextlib
import socket
import ssl
import threading

from tests.certs import Certificates


class InspectingProxy:
    def __init__(self, authority: Certificates) -> None:
        cert = authority.leaf("inspection", hosts=["localhost", "127.0.0.1"])
        self._context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        self._context.load_cert_chain(cert.cert_file, cert.key_file)
        self._sock = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._sock.getsockname()[1])
        self.url = f"http://127.0.0.1:{self.port}"
        threading.Thread(target=self._accept, daemon=True).start()

    def close(self) -> None:
        self._sock.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._sock.accept()
            except OSError:
                return
            threading.Thread(target=self._serve, args=(client,), daemon=True).start()

    def _serve(self, client: socket.socket) -> None:
        with contextlib.suppress(OSError), client:
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            host, _, port = head.split(b" ")[1].decode().rpartition(":")
            upstream = socket.create_connection((host, int(port)), timeout=5)
            client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
            unverified = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
            unverified.check_hostname, unverified.verify_mode = False, ssl.CERT_NONE
            with (
                self._context.wrap_socket(client, server_side=True) as inner,
                unverified.wrap_socket(upstream, server_hostname=host) as outer,
            ):
                threading.Thread(target=_pump, args=(outer, inner), daemon=True).start()
                _pump(inner, outer)


def _pump(source: ssl.SSLSocket, sink: ssl.SSLSocket) -> None:
    with contextlib.suppress(OSError):
        while chunk := source.recv(65536):
            sink.sendall(chunk)

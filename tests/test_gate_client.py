"""`python -m app gate`: every exit code against the real app server on 127.0.0.1 (ready, not ready, stale, an
unknown target, a wrong token), a closed port, a server that never answers or drips, hostile answers, https with
a private CA; the token never printed."""

from __future__ import annotations

import json
import select
import socket
import ssl
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from app.cli import main
from tests.certs import Certificates
from tests.pipeline.helpers import Receiver, Request
from tests.servers import ClosedPort, StallServer, stall_server
from tests.web.helpers import PASSWORD, SECRET_KEY, USERNAME, ServerProcess, tcp_target, write_targets

REPO = Path(__file__).resolve().parents[1]
LEAKED = "tpgate_leaked-through-an-echo-0123456789abcdef"  # what the hostile servers below are given and echo


@dataclass
class Pod:
    url: str
    token: str  # a gate token created through the API
    cache_port: int  # the closed port the failing target points at


@pytest.fixture(scope="module")
def pod(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pod]:
    """The real server: `db` reachable, `cache` (required) and `extra` (optional) on a closed port."""
    directory = tmp_path_factory.mktemp("gate-pod")
    with stall_server() as stall, ClosedPort() as closed:
        targets = [
            tcp_target("db", stall.port),
            tcp_target("cache", closed.port),
            tcp_target("extra", closed.port, required=False),
        ]
        env = {
            "TESTPOD_AUTH_PASSWORD": PASSWORD,
            "TESTPOD_SECRET_KEY": SECRET_KEY,
            "TESTPOD_RUN_ON_START": "false",
            "TESTPOD_CONFIG": str(write_targets(directory, targets)),
        }
        server = ServerProcess(env=env, log_path=directory / "server.log")
        server.start()
        try:
            with httpx.Client(base_url=server.url, timeout=10) as client:
                login = client.post("/api/token", data={"username": USERNAME, "password": PASSWORD})
                auth = {"Authorization": f"Bearer {login.json()['access_token']}"}
                created = client.post("/api/gate-tokens", json={"name": "gate cli"}, headers=auth)
                assert created.status_code == 201, created.text
            yield Pod(server.url, created.json()["token"], closed.port)
            assert created.json()["token"] not in server.log()
        finally:
            server.stop()


def gate(capsys: pytest.CaptureFixture[str], *args: str, token: str | None = None) -> tuple[int, str, str]:
    """Run the command in this process; the token it was given must appear in none of its output."""
    code = main(["gate", *args])
    out, err = capsys.readouterr()
    for secret in (token, LEAKED):
        if secret:
            assert secret not in out and secret not in err
    return code, out, err


@pytest.fixture
def as_ci(monkeypatch: pytest.MonkeyPatch, pod: Pod) -> Pod:
    """The pod's token in TESTPOD_GATE_TOKEN, its URL in TESTPOD_GATE_URL, as a CI job sets them."""
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", pod.token)
    monkeypatch.setenv("TESTPOD_GATE_URL", pod.url)
    return pod


# --- the real pod ------------------------------------------------------------------------------------------------


def test_ready_exits_0_with_the_verdict(as_ci: Pod, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gate(capsys, "--target", "db", "--wait", "10", token=as_ci.token)
    assert (code, err) == (0, "")
    assert out.startswith("READY: every required target is ready (1 target(s), oldest result ")


def test_not_ready_exits_1_naming_each_failing_required_target(as_ci: Pod, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = gate(capsys, "--wait", "10", token=as_ci.token)
    assert code == 1
    verdict, *failing = out.splitlines()
    assert verdict.startswith("NOT READY: 1 required target(s) not ready: cache (3 target(s), oldest result ")
    assert len(failing) == 1  # the optional `extra` fails too, and blocks nothing
    assert failing[0].startswith(f"  cache (tcp): failed at connect: cannot connect to 127.0.0.1:{as_ci.cache_port}")


def test_stale_results_exit_1_unless_the_pod_may_run_them(as_ci: Pod, capsys: pytest.CaptureFixture[str]) -> None:
    assert gate(capsys, "--target", "db", "--wait", "10", token=as_ci.token)[0] == 0
    time.sleep(0.01)
    code, out, _ = gate(capsys, "--target", "db", "--max-age", "0.001", token=as_ci.token)
    assert code == 1
    assert out.startswith("NOT READY: results older than 0.001 s: db (pass wait=SECONDS")
    assert gate(capsys, "--target", "db", "--max-age", "0.001", "--wait", "10", token=as_ci.token)[0] == 0


def test_the_token_file_wins_and_a_trailing_newline_is_fine(
    as_ci: Pod, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(as_ci.token + "\n")
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", "tpgate_not-this-one")
    code, out, _ = gate(capsys, "--token-file", str(token_file), "--target", "db", "--wait", "10", token=as_ci.token)
    assert code == 0, out


def test_a_target_the_pod_does_not_have_exits_2(as_ci: Pod, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = gate(capsys, "--target", "nope", token=as_ci.token)
    assert (code, out) == (2, "")
    assert err == (
        f"error: {as_ci.url}/api/readiness-gate answered 404: no target named 'nope'; configured targets: db, cache, "
        "extra\n"
    )


def test_a_wrong_or_revoked_token_exits_3(
    pod: Pod, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", "tpgate_wrong")
    code, out, err = gate(capsys, "--url", pod.url, token="tpgate_wrong")
    assert (code, out) == (3, "")
    assert f"{pod.url}/api/readiness-gate refused the token (401): it is wrong or was revoked" in err


def test_the_real_command_in_its_own_process(pod: Pod) -> None:
    """As a hook Job runs it: `python -m app gate`, the token only in the environment, the exit code the verdict."""
    env = {"PATH": "/usr/bin:/bin", "TESTPOD_GATE_URL": pod.url, "TESTPOD_GATE_TOKEN": pod.token}
    command = [sys.executable, "-m", "app", "gate", "--wait", "10", "--max-age", "300"]
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 1, done.stderr
    assert done.stdout.splitlines()[1].startswith("  cache (tcp): failed at connect: ")
    assert pod.token not in done.stdout + done.stderr


# --- usage and config: exit 2 ------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("args", "env", "message"),
    [
        ((), {"TESTPOD_GATE_TOKEN": "tpgate_x"}, "error: no URL: pass --url or set TESTPOD_GATE_URL"),
        (("--url", "http://127.0.0.1:1"), {}, "error: no gate token: pass --token-file FILE or set TESTPOD_GATE_TOKEN"),
        (("--url", "http://127.0.0.1:1"), {"TESTPOD_GATE_TOKEN": "  \n"}, "error: TESTPOD_GATE_TOKEN is empty"),
        (
            ("--url", "http://127.0.0.1:1"),
            {"TESTPOD_GATE_TOKEN": "tpgate_a b"},
            "error: TESTPOD_GATE_TOKEN does not hold a token (one word of printable ASCII",
        ),
        (("--url", "ftp://127.0.0.1"), {"TESTPOD_GATE_TOKEN": "t"}, "is not an http:// or https:// URL with a host"),
        (("--url", "http://127.0.0.1:99999"), {"TESTPOD_GATE_TOKEN": "t"}, "is not a valid URL"),
        (("--url", "http://127.0.0.1:1/?wait=5"), {"TESTPOD_GATE_TOKEN": "t"}, "has a query or fragment"),
        (
            ("--url", "http://ci:hunter2-password@127.0.0.1:1"),
            {"TESTPOD_GATE_TOKEN": "t"},
            "error: --url http://***@127.0.0.1:1 carries credentials",
        ),
        (
            ("--url", "http://127.0.0.1:1", "--wait", "60", "--timeout", "30"),
            {"TESTPOD_GATE_TOKEN": "t"},
            "error: --timeout 30 must be longer than --wait 60",
        ),
        (("--max-age", "0"), {}, "argument --max-age: '0' is not a number of seconds more than 0 and at most 604800"),
        (("--wait", "301"), {}, "argument --wait: '301' is not a number of seconds from 0 to 300"),
        (("--timeout", "nan"), {}, "argument --timeout: 'nan' is not a number of seconds"),
        (("--token", "tpgate_x"), {}, "error: a gate token is never taken from the command line; use --token-file"),
        (("--token=tpgate_x",), {}, "error: a gate token is never taken from the command line; use --token-file"),
    ],
)
def test_usage_and_config_errors_exit_2_before_any_call(
    args: tuple[str, ...],
    env: dict[str, str],
    message: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.delenv("TESTPOD_GATE_URL", raising=False)
    monkeypatch.delenv("TESTPOD_GATE_TOKEN", raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    try:
        code = main(["gate", *args])
    except SystemExit as exit_:  # argparse's errors
        code = int(exit_.code or 0)
    out, err = capsys.readouterr()
    assert (code, out) == (2, "")
    assert message in err
    assert "hunter2-password" not in err and "tpgate_x" not in err and "Traceback" not in err


def test_an_unreadable_token_file_or_ca_file_exits_2(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("TESTPOD_GATE_TOKEN", raising=False)
    url = ("--url", "http://127.0.0.1:1")
    missing = tmp_path / "missing"
    assert gate(capsys, *url, "--token-file", str(missing))[2] == (
        f"error: cannot read --token-file {missing}: No such file or directory\n"
    )
    (tmp_path / "empty").write_text("\n")
    assert gate(capsys, *url, "--token-file", str(tmp_path / "empty"))[2] == (
        f"error: --token-file {tmp_path / 'empty'} is empty\n"
    )
    assert "does not hold a token" in gate(capsys, *url, "--token-file", "/dev/zero")[2]
    (tmp_path / "token").write_text("tpgate_x")
    (tmp_path / "ca.pem").write_text("not a certificate")
    code, _, err = gate(capsys, *url, "--token-file", str(tmp_path / "token"), "--ca-file", str(tmp_path / "ca.pem"))
    assert code == 2 and f"error: --ca-file {tmp_path / 'ca.pem'} is not a readable PEM CA bundle: " in err


# --- the pod unreachable or not the gate: exit 3 -----------------------------------------------------------------


def test_a_closed_port_exits_3(
    closed_port: int, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", "tpgate_x")
    code, out, err = gate(capsys, "--url", f"http://127.0.0.1:{closed_port}")
    assert (code, out) == (3, "")
    assert err.startswith(f"error: cannot connect to http://127.0.0.1:{closed_port}/api/readiness-gate: ")
    assert "Connection refused" in err


def test_a_server_that_never_answers_is_given_up_on_time(
    stall: StallServer, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", "tpgate_x")
    started = time.monotonic()
    code, _, err = gate(capsys, "--url", f"http://127.0.0.1:{stall.port}", "--timeout", "1")
    assert time.monotonic() - started < 3
    assert code == 3
    assert err == f"error: no answer from http://127.0.0.1:{stall.port}/api/readiness-gate within 1 s\n"


class DripServer:
    """Answers 200, then one byte of body every 0.2 s, forever: each read is quick, the answer never ends."""

    def __init__(self) -> None:
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        self._stop = threading.Event()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        with suppress(OSError):
            conn, _ = self._listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n")
                while not self._stop.wait(0.2):
                    conn.sendall(b" ")

    def close(self) -> None:
        self._stop.set()
        self._listener.close()


def test_an_answer_that_never_ends_is_cut_by_the_hard_deadline(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    drip = DripServer()
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", "tpgate_x")
    started = time.monotonic()
    try:
        code, _, err = gate(capsys, "--url", f"http://127.0.0.1:{drip.port}", "--timeout", "1")
    finally:
        drip.close()
    assert time.monotonic() - started < 2.5  # httpx's per-read timeout alone would wait for ever
    assert code == 3 and "within 1 s" in err


def test_the_process_exits_on_time_while_the_call_still_hangs(stall: StallServer) -> None:
    env = {"PATH": "/usr/bin:/bin", "TESTPOD_GATE_TOKEN": "tpgate_x"}
    command = [sys.executable, "-m", "app", "gate", "--url", f"http://127.0.0.1:{stall.port}", "--timeout", "1"]
    started = time.monotonic()
    done = subprocess.run(command, cwd=REPO, env=env, capture_output=True, text=True, timeout=30, check=False)
    assert time.monotonic() - started < 5
    assert done.returncode == 3 and "within 1 s" in done.stderr


GATE_200 = json.dumps({"ready": True, "reason": "every required target is ready", "targets": ["a"], "failing": []})


@pytest.mark.parametrize(
    ("status", "body", "content_type", "message"),
    [
        (500, b"Internal Server Error", "text/plain", "answered status 500"),
        (502, b"<html>Bad Gateway</html>", "text/html", "answered status 502"),
        (503, b"<html>no healthy upstream</html>", "text/html", "answered a body that is not the gate's JSON"),
        (200, b"<html>a login page</html>", "text/html", "answered a body that is not the gate's JSON"),
        (
            200,
            json.dumps({"ready": False, "reason": "x", "failing": []}).encode(),
            "application/json",
            "not the gate's",
        ),
        (200, b"[1, 2]", "application/json", "answered a body that is not the gate's JSON"),
        (302, b"", "text/plain", "answered status 302"),
        (429, json.dumps({"detail": f"slow down {LEAKED}"}).encode(), "application/json", "429: slow down ***"),
        (200, b"{" + b" " * (2 * 1024 * 1024) + b"}", "application/json", "answered more than 1024 KiB"),
    ],
)
def test_an_answer_that_is_not_the_gate_exits_3(  # noqa: PLR0913, PLR0917 - the case's four fields, three fixtures
    status: int,
    body: bytes,
    content_type: str,
    message: str,
    receiver: Receiver,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    receiver.respond = lambda request: (status, {"Content-Type": content_type, "Location": "/elsewhere"}, body)
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", LEAKED)
    code, out, err = gate(capsys, "--url", receiver.url)
    assert (code, out) == (3, "")
    assert message in err
    assert len(receiver.requests) == 1  # a redirect is not followed: the token goes nowhere else


def test_options_reach_the_route_as_its_query_and_the_token_as_a_bearer_header(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.respond = lambda request: (200, {"Content-Type": "application/json"}, GATE_200.encode())
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", "tpgate_the-token")
    args = ("--url", receiver.url + "/prefix/", "--wait", "120", "--max-age", "300", "--target", "a", "--target", "b")
    code, out, _ = gate(capsys, *args, "--strict", token="tpgate_the-token")
    assert code == 0
    assert out == "READY: every required target is ready (1 target(s))\n"
    (request,) = receiver.requests
    assert request.path == "/prefix/api/readiness-gate?wait=120&max_age=300&target=a&target=b&strict=true"
    assert request.headers["Authorization"] == "Bearer tpgate_the-token"
    assert request.headers["Accept-Encoding"] == "identity"


@pytest.mark.parametrize("reply", [b"", b"SSH-2.0-OpenSSH_9.2\r\n"], ids=["hangs-up", "not-http"])
def test_a_server_that_hangs_up_or_speaks_another_protocol_exits_3(
    reply: bytes, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    listener = socket.create_server(("127.0.0.1", 0))
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"

    def answer_once() -> None:
        with suppress(OSError):
            conn, _ = listener.accept()
            with conn:
                conn.recv(65536)
                conn.sendall(reply)

    threading.Thread(target=answer_once, daemon=True).start()
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", "tpgate_x")
    try:
        code, out, err = gate(capsys, "--url", url, "--timeout", "5")
    finally:
        listener.close()
    assert (code, out) == (3, "")
    assert err.startswith(f"error: the call to {url}/api/readiness-gate failed: ")


def _hostile(request: Request) -> tuple[int, dict[str, str], bytes]:
    """A 503 shaped like the gate's, with terminal escapes, bidi overrides, C1 controls and the token echoed."""
    failing = [
        {
            "name": f"t{i}\x1b[2J\u202e",
            "kind": "tcp\r\nINJECTED",
            "status": "failed",
            "stage": "auth\x9b31m",
            "cause": f"server said {request.headers['Authorization']} {'x' * 5000}",
        }
        for i in range(150)
    ]
    body = {"ready": False, "reason": f"echo {LEAKED}\n\x07", "targets": [], "failing": failing, "age_seconds": "x"}
    return 503, {"Content-Type": "application/json"}, json.dumps(body).encode()


def test_hostile_gate_answers_are_bounded_and_scrubbed(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    receiver.respond = _hostile
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", LEAKED)
    code, out, _ = gate(capsys, "--url", receiver.url)
    assert code == 1
    lines = out.splitlines()
    assert lines[0] == "NOT READY: echo *** (0 target(s))"
    assert len(lines) == 1 + 100 + 1 and lines[-1] == "  … and 50 more"
    assert lines[1].startswith("  t0 [2J (tcp  INJECTED): failed at auth 31m: server said Bearer *** xxx")
    assert lines[1].endswith("x…")
    assert all(len(line) <= 700 for line in lines)
    assert all(ch.isprintable() for ch in out.replace("\n", ""))


def test_the_gate_saying_nothing_can_run_exits_1(
    receiver: Receiver, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    detail = {"detail": "the targets file is invalid, so nothing can run; see the dashboard"}
    receiver.respond = lambda request: (503, {"Content-Type": "application/json"}, json.dumps(detail).encode())
    monkeypatch.setenv("TESTPOD_GATE_TOKEN", "tpgate_x")
    assert gate(capsys, "--url", receiver.url) == (
        1,
        "NOT READY: the targets file is invalid, so nothing can run; see the dashboard\n",
        "",
    )


# --- https with a private CA -------------------------------------------------------------------------------------


class TlsRelay:
    """TLS in front of the real pod, as an ingress with a certificate from a private CA terminates it."""

    def __init__(self, upstream_port: int, context: ssl.SSLContext) -> None:
        self._upstream_port, self._context = upstream_port, context
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = int(self._listener.getsockname()[1])
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            threading.Thread(target=self._relay, args=(client,), daemon=True).start()

    def _relay(self, client: socket.socket) -> None:
        # one thread per connection, so the TLS socket is never read and written at once
        with (
            suppress(OSError),
            self._context.wrap_socket(client, server_side=True) as tls,
            socket.create_connection(("127.0.0.1", self._upstream_port)) as upstream,
        ):
            while True:
                readable = [tls] if tls.pending() else select.select([tls, upstream], [], [], 30)[0]
                for source in readable:
                    data = source.recv(65536)
                    if not data:
                        return
                    (upstream if source is tls else tls).sendall(data)
                if not readable:
                    return

    def close(self) -> None:
        self._listener.close()


def test_https_with_a_private_ca_file(as_ci: Pod, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    certs = Certificates(tmp_path)
    leaf = certs.leaf("ingress")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(leaf.cert_file, leaf.key_file)
    relay = TlsRelay(int(as_ci.url.rsplit(":", 1)[1]), context)
    try:
        url = f"https://localhost:{relay.port}"
        args = ("--url", url, "--target", "db", "--wait", "10")
        code, out, _ = gate(capsys, *args, "--ca-file", str(certs.ca_file), token=as_ci.token)
        assert code == 0 and out.startswith("READY: "), out
        code, _, err = gate(capsys, *args, token=as_ci.token)
        assert code == 3 and "CERTIFICATE_VERIFY_FAILED" in err
    finally:
        relay.close()

"""The client side of the readiness gate: `python -m app gate` asks a running pod's `/api/readiness-gate`, so a CI
job or a GitOps hook Job needs nothing but this image (which has no curl).

Everything the pod answers is untrusted: the body is read up to MAX_ANSWER bytes, and every word printed from it is
scrubbed of the token, freed of control characters and bounded in length. The whole call runs under one hard
deadline in a daemon thread: httpx's timeouts bound each network operation, and a server dripping one byte at a
time would outlast them. Only the standard library and app.sanitization load at import; httpx when a call is made.
"""

from __future__ import annotations

import json
import os
import ssl
import threading
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from app.sanitization import clean_remote_text, redact, scrubbing

GATE_URL_ENV = "TESTPOD_GATE_URL"
GATE_TOKEN_ENV = "TESTPOD_GATE_TOKEN"  # noqa: S105 - the variable's name, not a token
GATE_PATH = "/api/readiness-gate"
MAX_AGE = 7 * 24 * 3600.0  # the route's own bounds, so a bad value is a usage error before any call
MAX_WAIT = 300.0
MAX_TIMEOUT = 3600.0
TIMEOUT_MARGIN = 30.0  # beyond --wait: the pod's run may end right at its bound, then it answers
MAX_ANSWER = 1024 * 1024  # the gate's answer for hundreds of targets is far smaller
MAX_TOKEN = 4096
MAX_LINES = 100  # failing targets printed; the rest are counted


class GateConfigError(Exception):
    """The call is wrongly set up: no URL or token, an unreadable file, options or a target the pod refuses."""


class GateUnreachable(Exception):
    """The pod cannot be reached in time, or what answered is not the gate (or refused the token)."""


@dataclass(frozen=True)
class GateAnswer:
    ready: bool
    lines: list[str]  # the verdict, then one line per failing required target; clean to print


@dataclass(frozen=True)
class GateCall:
    url: str  # the gate's full URL
    token: str
    params: tuple[tuple[str, str], ...]  # the route's query parameters
    timeout: float
    ca_file: str | None = None


def gate_url(base: str) -> str:
    """The gate's URL under the test pod's base URL (which may carry a path prefix, behind an ingress)."""
    base = base.strip()
    if not base:
        raise GateConfigError(
            f"no URL: pass --url or set {GATE_URL_ENV} to the test pod's base URL "
            "(e.g. http://readiness-airia-test-pod.airia-readiness.svc:8080)"
        )
    shown = _clean(redact(base, ()))
    try:
        parts = urlsplit(base)
        parts.port  # noqa: B018 - raises ValueError for a port that is not a number from 0 to 65535
    except ValueError:
        raise GateConfigError(f"--url {shown} is not a valid URL") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GateConfigError(f"--url {shown} is not an http:// or https:// URL with a host")
    if parts.username is not None or parts.password is not None:
        raise GateConfigError(
            f"--url {shown} carries credentials; the gate token comes from --token-file or {GATE_TOKEN_ENV}"
        )
    if parts.query or parts.fragment:
        raise GateConfigError(
            f"--url {shown} has a query or fragment; give the pod's base URL and the options as flags"
        )
    return base.rstrip("/") + GATE_PATH


def read_token(token_file: str | None) -> str:
    """The gate token from the file, else from the environment; never from the command line (`ps` shows it)."""
    if token_file:
        source = f"--token-file {token_file}"
        try:
            with open(token_file, "rb") as file:
                raw = file.read(MAX_TOKEN + 2)  # bounded: a wrong path may name a device or a huge file
        except OSError as error:
            raise GateConfigError(f"cannot read {source}: {error.strerror or type(error).__name__}") from None
        text = raw.decode("utf-8", errors="replace")
    else:
        source, text = GATE_TOKEN_ENV, os.environ.get(GATE_TOKEN_ENV, "")
        if not text:
            raise GateConfigError(
                f"no gate token: pass --token-file FILE or set {GATE_TOKEN_ENV} (a token is never a command-line value)"
            )
    token = text.strip()
    if not token:
        raise GateConfigError(f"{source} is empty")
    if len(token) > MAX_TOKEN or not token.isascii() or not token.isprintable() or " " in token:
        raise GateConfigError(f"{source} does not hold a token (one word of printable ASCII, like tpgate_…)")
    return token


def ask(call: GateCall) -> GateAnswer:
    """Ask the gate once, within `call.timeout` seconds whatever the server does."""
    verify: ssl.SSLContext | bool = True
    if call.ca_file:
        try:
            verify = ssl.create_default_context(cafile=call.ca_file)
        except (OSError, ssl.SSLError) as error:
            cause = getattr(error, "strerror", None) or getattr(error, "reason", None) or type(error).__name__
            raise GateConfigError(f"--ca-file {call.ca_file} is not a readable PEM CA bundle: {cause}") from None
    with scrubbing([call.token]):
        status, body = _fetch(call, verify)
        return _read(status, body, call)


def _fetch(call: GateCall, verify: ssl.SSLContext | bool) -> tuple[int, bytes]:
    import httpx

    outcome: list[tuple[int, bytes] | BaseException] = []

    def get() -> None:
        headers = {"Authorization": f"Bearer {call.token}", "Accept": "application/json", "Accept-Encoding": "identity"}
        try:
            with (
                httpx.Client(verify=verify, timeout=call.timeout, follow_redirects=False) as client,
                client.stream("GET", call.url, params=call.params, headers=headers) as response,
            ):
                body = bytearray()
                for chunk in response.iter_raw():  # raw: a compressed answer is not inflated into memory
                    body += chunk
                    if len(body) > MAX_ANSWER:
                        raise _TooLarge
                outcome.append((response.status_code, bytes(body)))
        except BaseException as error:  # handed to the caller's thread, which decides
            outcome.append(error)

    # a daemon thread: when the deadline passes the process may exit at once, without waiting for the socket
    thread = threading.Thread(target=get, name="readiness-gate", daemon=True)
    thread.start()
    thread.join(call.timeout)
    where = _clean(redact(call.url, ()))
    if not outcome:
        raise GateUnreachable(f"no answer from {where} within {call.timeout:g} s")
    result = outcome[0]
    if isinstance(result, tuple):
        return result
    if isinstance(result, _TooLarge):
        raise GateUnreachable(f"{where} answered more than {MAX_ANSWER // 1024} KiB: not the readiness gate")
    if isinstance(result, httpx.TimeoutException):
        raise GateUnreachable(f"no answer from {where} within {call.timeout:g} s")
    if isinstance(result, httpx.ConnectError):
        raise GateUnreachable(f"cannot connect to {where}: {_cause(result)}")
    if isinstance(result, httpx.HTTPError):
        raise GateUnreachable(f"the call to {where} failed: {_cause(result)}")
    raise result


class _TooLarge(Exception):
    pass


def _read(status: int, body: bytes, call: GateCall) -> GateAnswer:
    """Judge the pod's answer: the gate's 200 or 503 (or its 503 saying nothing can run), else the reason why not."""
    where = _clean(redact(call.url, ()))
    try:
        document: Any = json.loads(body)
    except ValueError:  # UnicodeDecodeError included
        document = None
    detail = _clean(document.get("detail")) if isinstance(document, dict) and "detail" in document else None
    if status in (401, 403):
        raise GateUnreachable(
            f"{where} refused the token ({status}): it is wrong or was revoked; create a gate token on the "
            "dashboard's Gate tokens page"
        )
    if status in (404, 422):  # a --url that is not the pod's, a --target it does not have, options it refuses
        raise GateConfigError(f"{where} answered {status}: {detail or 'no such route (is --url the pod?)'}")
    if status in (200, 503) and _is_gate_answer(document, ready=status == 200):
        return _verdict(document)
    if status == 503 and isinstance(document, dict) and isinstance(document.get("detail"), str):
        return GateAnswer(ready=False, lines=[f"NOT READY: {detail}"])  # the gate's: an invalid targets file
    what = "a body that is not the gate's JSON" if status in (200, 503) else f"status {status}"
    raise GateUnreachable(f"{where} answered {what}{f': {detail}' if detail else ''}")


def _is_gate_answer(document: Any, *, ready: bool) -> bool:
    return (
        isinstance(document, dict)
        and document.get("ready") is ready
        and isinstance(document.get("reason"), str)
        and isinstance(document.get("failing"), list)
        and all(isinstance(f, dict) for f in document["failing"])
    )


def _verdict(answer: dict[str, Any]) -> GateAnswer:
    age = answer.get("age_seconds")
    when = f", oldest result {age:.0f} s old" if isinstance(age, int | float) and not isinstance(age, bool) else ""
    targets = answer.get("targets")
    count = f"{len(targets)} target(s)" if isinstance(targets, list) else "targets"
    ready = answer["ready"] is True
    lines = [f"{'READY' if ready else 'NOT READY'}: {_clean(answer['reason'])} ({count}{when})"]
    failing: list[dict[str, Any]] = answer["failing"]
    for target in failing[:MAX_LINES]:
        stage = f" at {_clean(target['stage'], 40)}" if target.get("stage") else ""
        lines.append(
            f"  {_clean(target.get('name'), 80)} ({_clean(target.get('kind'), 40)}): "
            f"{_clean(target.get('status'), 40)}{stage}: {_clean(target.get('cause'))}"
        )
    if len(failing) > MAX_LINES:
        lines.append(f"  … and {len(failing) - MAX_LINES} more")
    return GateAnswer(ready=ready, lines=lines)


def _cause(error: BaseException) -> str:
    return _clean(str(error) or type(error).__name__)


def _clean(value: object, limit: int = 500) -> str:
    """One printable line from the pod's words (or an error quoting them): the token in scope scrubbed, control
    characters, including Unicode's format and line-separator ones a terminal would act on, made spaces."""
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    text = clean_remote_text(text, limit)
    return "".join(ch if ch.isprintable() else " " for ch in text)

"""Security properties of the service, each against a real app: hashing, tokens, cookies, CSRF, throttling,
headers, docs exposure."""

from __future__ import annotations

import re
import statistics
import time
import warnings

import jwt
import pytest

with warnings.catch_warnings():
    warnings.simplefilter("ignore", UserWarning)
    from fastapi.testclient import TestClient

from app.auth import SESSION_COOKIE, Authenticator, LoginRejected, LoginThrottle, LoginThrottled, hash_password
from tests.servers import StallServer
from tests.web.helpers import PASSWORD, SECRET_KEY, USERNAME, MakeClient, bearer, login, tcp_target


def _claims(**overrides: object) -> dict[str, object]:
    now = int(time.time())
    return {"sub": USERNAME, "iat": now, "exp": now + 600, "jti": "abc", "csrf": "c", **overrides}


def _hs512(claims: dict[str, object]) -> str:
    """Same key, another HMAC: must fail because the algorithm is pinned (PyJWT warns the key is short for it)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return jwt.encode(claims, SECRET_KEY, algorithm="HS512")


def _status_with(client: TestClient, token: str) -> int:
    return client.get("/api/targets", headers={"Authorization": f"Bearer {token}"}).status_code


def test_the_password_is_kept_only_as_an_argon2_hash(make_client: MakeClient) -> None:
    client = make_client(None)
    authenticator: Authenticator = client.app.state.authenticator  # type: ignore[attr-defined]
    assert authenticator.stored_hash.startswith("$argon2id$")
    assert PASSWORD not in repr(vars(authenticator))
    assert PASSWORD not in repr(vars(client.app.state.pod))  # type: ignore[attr-defined]


def test_a_valid_token_works_and_forged_ones_do_not(make_client: MakeClient) -> None:
    client = make_client(None)
    good = bearer(client)["Authorization"].removeprefix("Bearer ")
    assert _status_with(client, good) == 200

    header, _, signature = good.split(".")
    other_payload = jwt.encode(_claims(sub="root"), "x" * 40, algorithm="HS256").split(".")[1]
    forged = {
        "tampered payload": f"{header}.{other_payload}.{signature}",
        "expired": jwt.encode(_claims(iat=1, exp=2), SECRET_KEY, algorithm="HS256"),
        "alg none": jwt.encode(_claims(), None, algorithm="none"),
        "other key": jwt.encode(_claims(), "another-signing-key-with-enough-length-1", algorithm="HS256"),
        "other algorithm": _hs512(_claims()),
        "no expiry": jwt.encode({k: v for k, v in _claims().items() if k != "exp"}, SECRET_KEY, algorithm="HS256"),
        "other user": jwt.encode(_claims(sub="mallory"), SECRET_KEY, algorithm="HS256"),
        "garbage": "not.a.token",
    }
    for name, token in forged.items():
        assert _status_with(client, token) == 401, name


def test_pages_need_a_session_and_send_strangers_to_the_login_page(make_client: MakeClient) -> None:
    client = make_client(None)
    assert client.get("/").status_code == 303
    assert client.get("/").headers["location"] == "/login"
    login(client)
    assert client.get("/").status_code == 200
    assert client.get("/login").headers["location"] == "/"  # already logged in


def test_session_cookie_flags_over_http_and_https(make_client: MakeClient) -> None:
    for base_url, secure in (("http://testserver", False), ("https://testserver", True)):
        client = make_client(None, base_url=base_url)
        login(client)
        cookie = next(c for c in client.cookies.jar if c.name == SESSION_COOKIE)
        assert cookie.has_nonstandard_attr("HttpOnly")
        assert cookie.get_nonstandard_attr("SameSite").lower() == "strict"
        assert cookie.path == "/"
        assert cookie.secure is secure
        headers = client.get("/").headers
        assert ("strict-transport-security" in headers) is secure


def test_cookie_secure_setting_marks_cookies_secure_behind_a_tls_ingress(make_client: MakeClient) -> None:
    for setting in (False, True):  # the ingress ends TLS; the pod itself sees http either way
        form = make_client(None, cookie_secure=setting).get("/login")
        cookies = form.headers.get_list("set-cookie")
        assert cookies
        assert all(("secure" in c.lower().split("; ")) is setting for c in cookies)


def test_cookie_state_changes_need_the_csrf_token(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    csrf = login(client)
    assert client.post("/api/runs").status_code == 403
    assert client.post("/api/runs").json()["detail"].startswith("missing or wrong CSRF token")
    assert client.post("/api/runs", headers={"X-CSRF-Token": "guess"}).status_code == 403
    assert client.post("/api/runs", headers={"X-CSRF-Token": csrf}).status_code == 202
    assert client.get("/api/results").status_code == 200  # reads need no token

    # a script with a Bearer token has no cookie a third party could ride on, so it needs no CSRF token
    scripted = make_client([tcp_target("db", stall.port)])
    assert scripted.post("/api/runs", headers=bearer(scripted)).status_code == 202


def test_the_login_form_needs_its_own_csrf_token(make_client: MakeClient) -> None:
    client = make_client(None)
    answer = client.post("/login", data={"username": USERNAME, "password": PASSWORD, "csrf_token": "forged"})
    assert answer.status_code == 403
    assert "expired" in answer.text
    assert SESSION_COOKIE not in client.cookies


def test_logout_is_a_post_with_csrf_and_ends_the_session(make_client: MakeClient) -> None:
    client = make_client(None)
    csrf = login(client)
    session = client.cookies[SESSION_COOKIE]
    assert client.get("/logout").status_code == 405
    assert client.post("/logout").status_code == 403  # no CSRF field: a cross-site form cannot log us out
    answer = client.post("/logout", data={"csrf_token": csrf})
    assert answer.status_code == 303
    assert answer.headers["location"] == "/login"
    assert SESSION_COOKIE not in client.cookies
    # the old token is revoked, not just forgotten by this browser
    client.cookies.set(SESSION_COOKIE, session)
    assert client.get("/api/targets").status_code == 401


def test_unknown_user_and_wrong_password_look_the_same(make_client: MakeClient) -> None:
    client = make_client(None)
    wrong_password = client.post("/api/token", data={"username": USERNAME, "password": "not-the-password"})
    unknown_user = client.post("/api/token", data={"username": "nobody", "password": PASSWORD})
    assert wrong_password.status_code == unknown_user.status_code == 401
    assert wrong_password.json() == unknown_user.json() == {"detail": "incorrect username or password"}

    page = login_page_failure(client, "nobody", PASSWORD)
    assert page == login_page_failure(client, USERNAME, "not-the-password")


def login_page_failure(client: TestClient, username: str, password: str) -> tuple[int, str]:
    form = client.get("/login").text
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    answer = client.post("/login", data={"username": username, "password": password, "csrf_token": token})
    message = answer.text.split('role="alert">')[1].split("<")[0]
    return answer.status_code, message


def test_an_unknown_user_costs_a_full_password_check() -> None:
    authenticator = Authenticator(USERNAME, hash_password(PASSWORD), SECRET_KEY, 600)

    def timed(username: str, password: str) -> float:
        started = time.perf_counter()
        assert authenticator.verify(username, password) is False
        return time.perf_counter() - started

    wrong_password = statistics.median(timed(USERNAME, "wrong-password-1") for _ in range(3))
    unknown_user = statistics.median(timed("nobody", PASSWORD) for _ in range(3))
    assert wrong_password > 0.02  # argon2 really ran
    assert 0.25 < unknown_user / wrong_password < 4  # no short cut: an early return would be ~1000x faster


def test_five_failures_lock_the_username_at_that_address(make_client: MakeClient) -> None:
    client = make_client(None)
    started = time.monotonic()
    for _ in range(5):
        assert client.post("/api/token", data={"username": USERNAME, "password": "guess"}).status_code == 401
    locked = client.post("/api/token", data={"username": USERNAME, "password": PASSWORD})
    assert locked.status_code == 429
    # the 15-minute window counts from the first failure; hashing five guesses takes a while on a loaded machine
    assert 900 - (time.monotonic() - started) - 1 <= int(locked.headers["retry-after"]) <= 900
    assert "too many failed logins" in locked.json()["detail"]

    # the form login is throttled too
    form = client.get("/login").text
    token = form.split('name="csrf_token" value="')[1].split('"')[0]
    page = client.post("/login", data={"username": USERNAME, "password": PASSWORD, "csrf_token": token})
    assert page.status_code == 429
    assert "Too many failed logins. Try again in 15 minutes." in page.text
    assert page.headers["retry-after"]

    # a guesser elsewhere cannot lock the admin out: from another address the right password still works
    elsewhere = TestClient(client.app, client=("127.0.0.2", 40000), follow_redirects=False)
    assert elsewhere.post("/api/token", data={"username": USERNAME, "password": PASSWORD}).status_code == 200

    # the first address is locked whatever username it tries
    assert client.post("/api/token", data={"username": "someone-else", "password": "x"}).status_code == 429


def test_spraying_usernames_from_one_address_is_throttled(make_client: MakeClient) -> None:
    client = make_client(None)
    for attempt in range(5):
        assert client.post("/api/token", data={"username": f"user{attempt}", "password": "x"}).status_code == 401
    assert client.post("/api/token", data={"username": USERNAME, "password": PASSWORD}).status_code == 429
    other = TestClient(client.app, client=("127.0.0.3", 40000))
    assert other.post("/api/token", data={"username": USERNAME, "password": PASSWORD}).status_code == 200


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_the_throttle_forgets_failures_after_the_window() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(limit=5, window=900, clock=clock)
    keys = ("user:admin", "client:127.0.0.1")
    for _ in range(5):
        throttle.begin(keys)
        clock.now += 10
    with pytest.raises(LoginThrottled) as raised:
        throttle.begin(keys)
    assert raised.value.retry_after == 850  # the oldest failure leaves the window 850 s from now
    clock.now += 851
    throttle.begin(keys)  # one slot is free again


def test_a_success_forgives_earlier_failures() -> None:
    throttle = LoginThrottle(limit=5, window=900, clock=FakeClock())
    keys = ("user:admin",)
    for _ in range(4):
        throttle.begin(keys)
    throttle.succeeded(keys)
    for _ in range(5):
        throttle.begin(keys)
    with pytest.raises(LoginThrottled):
        throttle.begin(keys)


def test_the_throttle_holds_bounded_memory() -> None:
    clock = FakeClock()
    throttle = LoginThrottle(limit=5, window=900, clock=clock, max_keys=100)
    for address in range(1000):
        throttle.begin([f"client:{address}"])
        clock.now += 1
    assert len(throttle._attempts) <= 100


def test_rejected_logins_count_even_while_being_checked() -> None:
    authenticator = Authenticator(USERNAME, hash_password(PASSWORD), SECRET_KEY, 600)
    for _ in range(5):
        with pytest.raises(LoginRejected):
            authenticator.authenticate(USERNAME, "nope", "127.0.0.1")
    with pytest.raises(LoginThrottled):
        authenticator.authenticate(USERNAME, PASSWORD, "127.0.0.1")


def test_security_headers_on_every_response(make_client: MakeClient) -> None:
    client = make_client(None)
    responses = [
        client.get("/login"),
        client.get("/health/live"),
        client.get("/api/targets"),
        client.get("/nope"),
        client.get("/static/app.css"),
        client.post("/api/token", data={"username": "a", "password": "x" * 70_000}),
    ]
    for answer in responses:
        csp = answer.headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "unsafe-eval" not in csp
        assert "frame-ancestors 'none'" in csp
        assert answer.headers["x-content-type-options"] == "nosniff"
        assert answer.headers["referrer-policy"] == "no-referrer"
        assert answer.headers["x-frame-options"] == "DENY"
    assert client.get("/login").headers["cache-control"] == "no-store"


def test_pages_carry_no_inline_script(make_client: MakeClient, stall: StallServer) -> None:
    client = make_client([tcp_target("db", stall.port)])
    login(client)
    for page in (client.get("/login").text, client.get("/").text):
        assert all(tag.startswith('<script src="/static/') for tag in re.findall(r"<script[^>]*>", page))
        assert re.search(r"<[^>]+\son[a-z]+\s*=", page) is None  # no inline event handlers
        assert "<style" not in page and " style=" not in page


def test_openapi_schema_is_served_only_in_dev_mode(make_client: MakeClient) -> None:
    production = make_client(None)
    for path in ("/openapi.json", "/docs", "/redoc"):
        assert production.get(path).status_code == 404
    development = make_client(None, dev_mode=True)
    schema = development.get("/openapi.json")
    assert schema.status_code == 200
    assert "/api/runs" in schema.json()["paths"]


def test_a_signed_out_session_stays_revoked_after_a_restart(make_client: MakeClient) -> None:
    before = make_client(None)
    csrf = login(before)
    session = before.cookies[SESSION_COOKIE]
    assert before.post("/logout", data={"csrf_token": csrf}).status_code == 303
    after = make_client(None)  # the same settings and signing key, as the chart keeps them across restarts
    after.cookies.set(SESSION_COOKIE, session)
    assert after.get("/api/targets").status_code == 401
    assert after.get("/").status_code == 303


def test_a_bearer_token_can_be_revoked_and_stays_revoked_after_a_restart(make_client: MakeClient) -> None:
    client = make_client(None)
    auth = bearer(client)
    assert client.get("/api/targets", headers=auth).status_code == 200
    assert client.post("/api/token/revoke", headers=auth).status_code == 204
    assert client.get("/api/targets", headers=auth).status_code == 401
    assert client.post("/api/token/revoke", headers=auth).status_code == 401
    assert make_client(None).get("/api/targets", headers=auth).status_code == 401


def test_revoking_with_the_session_cookie_needs_the_csrf_token(make_client: MakeClient) -> None:
    client = make_client(None)
    csrf = login(client)
    assert client.post("/api/token/revoke").status_code == 403
    assert client.post("/api/token/revoke", headers={"X-CSRF-Token": csrf}).status_code == 204
    assert client.get("/api/targets").status_code == 401

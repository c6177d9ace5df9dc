"""The browser's pages: the dashboard, the login form, logout, and the gate tokens. Results are filled in by
static/app.js from the JSON API; the templates only lay out one generic card per target, whatever its kind.
The gate-token page is server-rendered forms over the same `GateTokens` and request model as the JSON API."""

from __future__ import annotations

import hmac
import math
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request, status
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from pydantic import ValidationError

from app import __version__, checks
from app.auth import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE, LoginRejected, LoginThrottled, User
from app.tokens import MAX_NAME, MAX_TOKENS, NAME_RULE, TokenNotSaved, TooManyTokens
from app.web.deps import AuthenticatorDep, PageUser, PodDep
from app.web.gate import NewGateToken
from app.web.pod import Pod

router = APIRouter(include_in_schema=False)
templates = Jinja2Templates(directory=Path(__file__).parent / "templates")  # autoescapes every value
templates.env.globals["version"] = __version__


@router.get("/", response_class=HTMLResponse)
async def dashboard(request: Request, pod: PodDep, user: PageUser) -> Response:
    return templates.TemplateResponse(
        request,
        "dashboard.html",
        {
            "user": user.name,
            "csrf": user.csrf,
            "targets": list(pod.runner.targets.values()),
            "config_error": pod.health.config_error,
            "strict": pod.runner.strict,
            "kinds": list(checks.kind_models()),
        },
    )


@router.get("/login", response_class=HTMLResponse)
async def login_page(request: Request, authenticator: AuthenticatorDep) -> Response:
    session = request.cookies.get(SESSION_COOKIE)
    if session and authenticator.read(session) is not None:
        return RedirectResponse("/", status_code=303)
    return _login_form(request, None, 200)


@router.post("/login", response_class=HTMLResponse)
def login(
    request: Request,
    authenticator: AuthenticatorDep,
    username: Annotated[str, Form(max_length=256)],
    password: Annotated[str, Form(max_length=1024)],
    csrf_token: Annotated[str, Form(max_length=256)] = "",
) -> Response:
    # double submit: a cross-site form cannot read our cookie, and SameSite=Strict keeps it from being sent
    expected = request.cookies.get(LOGIN_COOKIE, "")
    if not expected or not hmac.compare_digest(csrf_token.encode(), expected.encode()):
        return _login_form(request, "The login form had expired. Please try again.", 403)
    client = request.client.host if request.client else "unknown"
    try:
        authenticator.authenticate(username, password, client)
    except LoginThrottled as error:
        minutes = math.ceil(error.retry_after / 60)
        message = f"Too many failed logins. Try again in {minutes} minute{'s' if minutes != 1 else ''}."
        return _login_form(request, message, 429, {"Retry-After": str(error.retry_after)})
    except LoginRejected:
        return _login_form(request, "Incorrect username or password.", 401)
    issued = authenticator.issue()
    response = RedirectResponse("/", status_code=303)
    response.set_cookie(SESSION_COOKIE, issued.token, max_age=issued.max_age, **_cookie_flags(request, "/"))
    response.delete_cookie(LOGIN_COOKIE, **_cookie_flags(request, "/login"))
    return response


@router.post("/logout")
async def logout(request: Request, authenticator: AuthenticatorDep, user: PageUser) -> Response:
    authenticator.revoke(user)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE, **_cookie_flags(request, "/"))
    return response


@router.get("/gate-tokens", response_class=HTMLResponse)
async def gate_tokens_page(request: Request, pod: PodDep, user: PageUser) -> Response:
    return _gate_tokens(request, pod, user)


@router.post("/gate-tokens", response_class=HTMLResponse)
async def create_gate_token(
    request: Request, pod: PodDep, user: PageUser, name: Annotated[str, Form()] = ""
) -> Response:
    try:
        body = NewGateToken(name=name)  # the API's own validation
    except ValidationError:
        return _gate_tokens(request, pod, user, 422, error=NAME_RULE)
    try:
        token, secret = await pod.gate_tokens.create(body.name)
    except TooManyTokens as error:
        return _gate_tokens(request, pod, user, status.HTTP_409_CONFLICT, error=f"{error}.")
    except TokenNotSaved as error:
        return _gate_tokens(request, pod, user, status.HTTP_503_SERVICE_UNAVAILABLE, error=f"{error}.")
    return _gate_tokens(request, pod, user, status.HTTP_201_CREATED, created=(token, secret))


@router.post("/gate-tokens/{token_id}/revoke", response_class=HTMLResponse)
async def revoke_gate_token(request: Request, pod: PodDep, user: PageUser, token_id: str) -> Response:
    named = {t.id: t.name for t in pod.gate_tokens.list()}
    try:
        revoked = await pod.gate_tokens.revoke(token_id)
    except TokenNotSaved as refused:
        return _gate_tokens(request, pod, user, status.HTTP_503_SERVICE_UNAVAILABLE, error=f"{refused}.")
    if not revoked:
        missing = f"No gate token has the id {token_id[:32]!r}; it may have been revoked already."
        return _gate_tokens(request, pod, user, status.HTTP_404_NOT_FOUND, error=missing)
    return _gate_tokens(request, pod, user, notice=f"Revoked the gate token “{named[token_id]}”: it no longer works.")


def _gate_tokens(
    request: Request, pod: Pod, user: User, status_code: int = status.HTTP_200_OK, **shown: object
) -> Response:
    """The page, with what the last action showed: `created` (the token and its secret), `notice` or `error`."""
    return templates.TemplateResponse(
        request,
        "gate_tokens.html",
        {
            "user": user.name,
            "csrf": user.csrf,
            "csrf_field": CSRF_FIELD,
            "tokens": pod.gate_tokens.list(),
            "created": None,
            "notice": None,
            "error": None,
            **shown,
            "base_url": str(request.base_url).rstrip("/"),
            "gate_url": f"{str(request.base_url).rstrip('/')}/api/readiness-gate",
            "name_rule": NAME_RULE,
            "max_name": MAX_NAME,
            "max_tokens": MAX_TOKENS,
        },
        status_code=status_code,
    )


def _login_form(
    request: Request, message: str | None, status_code: int, headers: dict[str, str] | None = None
) -> Response:
    token = secrets.token_urlsafe(32)
    response = templates.TemplateResponse(
        request,
        "login.html",
        {"csrf_field": CSRF_FIELD, "csrf": token, "message": message},
        status_code=status_code,
        headers=headers,
    )
    response.set_cookie(LOGIN_COOKIE, token, max_age=3600, **_cookie_flags(request, "/login"))
    return response


def _cookie_flags(request: Request, path: str) -> dict[str, Any]:
    secure = request.url.scheme == "https" or request.app.state.cookie_secure
    return {"path": path, "httponly": True, "samesite": "strict", "secure": secure}

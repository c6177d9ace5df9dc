"""The browser's pages: the dashboard, the login form, logout. Results are filled in by static/app.js
from the JSON API; the templates only lay out one generic card per target, whatever its kind."""

from __future__ import annotations

import hmac
import math
import secrets
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates

from app import __version__, checks
from app.auth import CSRF_FIELD, LOGIN_COOKIE, SESSION_COOKIE, LoginRejected, LoginThrottled
from app.web.deps import AuthenticatorDep, PageUser, PodDep

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

"""Every FastAPI dependency of the routes: the pod, the authenticator, the user behind a request and the reader
of the readiness gate."""

from __future__ import annotations

import hmac
from typing import Annotated, Any, cast

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import OAuth2PasswordBearer

from app.auth import CSRF_FIELD, CSRF_HEADER, SAFE_METHODS, SESSION_COOKIE, Authenticator, LoginRequired, User
from app.tokens import PREFIX
from app.web.pod import Pod


async def get_pod(request: Request) -> Pod:  # async: a plain def would cost a thread hop per request
    return cast(Pod, request.app.state.pod)


PodDep = Annotated[Pod, Depends(get_pod)]


async def get_authenticator(request: Request) -> Authenticator:  # async: runs inline, no thread hop
    return cast(Authenticator, request.app.state.authenticator)


_bearer = OAuth2PasswordBearer(tokenUrl="api/token", auto_error=False)

_NOT_LOGGED_IN = "not authenticated: log in at /login, or send 'Authorization: Bearer <token>' from POST /api/token"


async def current_user(
    request: Request,
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
    bearer: Annotated[str | None, Depends(_bearer)],
) -> User:
    """The user behind a request: a Bearer token, else the session cookie plus CSRF token on state changes."""
    if bearer is not None:
        user = authenticator.read(bearer)
        if user is None:
            raise _unauthorized("the Bearer token is invalid or expired; get a new one from POST /api/token")
        return User(user.name, user.token_id, user.expires, csrf=None)
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        raise _unauthorized(_NOT_LOGGED_IN)
    user = authenticator.read(cookie)
    if user is None:
        raise _unauthorized("the session is invalid or has expired; log in again at /login")
    if request.method not in SAFE_METHODS and not hmac.compare_digest(
        (await _sent_csrf(request)).encode(), (user.csrf or "").encode()
    ):
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"missing or wrong CSRF token: send the session's token in the {CSRF_HEADER} header",
        )
    return user


async def page_user(request: Request, authenticator: Annotated[Authenticator, Depends(get_authenticator)]) -> User:
    """Like current_user, for pages: without a valid session the browser is sent to the login page."""
    try:
        return await current_user(request, authenticator, None)
    except HTTPException as error:
        if error.status_code == status.HTTP_401_UNAUTHORIZED:
            raise LoginRequired from None
        raise


async def gate_reader(
    request: Request,
    pod: PodDep,
    authenticator: Annotated[Authenticator, Depends(get_authenticator)],
    bearer: Annotated[str | None, Depends(_bearer)],
) -> str:
    """Who reads the gate: a gate token's name, or the logged-in admin (Bearer token or session)."""
    if bearer is not None and bearer.startswith(PREFIX):
        token = pod.gate_tokens.verify(bearer)
        if token is None:
            raise _unauthorized(
                "the gate token is unknown or was revoked; the admin creates one on the dashboard's"
                " Gate tokens page (/gate-tokens) or with POST /api/gate-tokens"
            )
        return f"gate token {token.name}"
    return (await current_user(request, authenticator, bearer)).name


async def _sent_csrf(request: Request) -> str:
    sent = request.headers.get(CSRF_HEADER)
    if sent is None and request.headers.get("content-type", "").startswith("application/x-www-form-urlencoded"):
        value: Any = (await request.form()).get(CSRF_FIELD)
        sent = value if isinstance(value, str) else None
    return sent or ""


def _unauthorized(detail: str) -> HTTPException:
    return HTTPException(status.HTTP_401_UNAUTHORIZED, detail, headers={"WWW-Authenticate": "Bearer"})


CurrentUser = Annotated[User, Depends(current_user)]
PageUser = Annotated[User, Depends(page_user)]
AuthenticatorDep = Annotated[Authenticator, Depends(get_authenticator)]
GateReader = Annotated[str, Depends(gate_reader)]  # a gate token's name or the admin's: can read the verdict

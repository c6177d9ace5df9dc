"""Every error is a small JSON document `{"detail": ...}` with a 4xx status (the last resort, a 500, is
middleware.CatchAll); never a stack trace."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from pydantic import BaseModel
from starlette.exceptions import HTTPException
from starlette.routing import Match

from app.auth import LoginRequired


class Problem(BaseModel):
    detail: str


def problems(*codes: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI `responses` entries for the error statuses a route can answer with."""
    return {code: {"model": Problem} for code in codes}


async def _http_error(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    detail = error.detail
    if error.status_code == 404 and detail == "Not Found":
        detail = f"no such route: {request.url.path}"
    elif error.status_code == 405 and detail == "Method Not Allowed":
        detail = f"{request.method} is not allowed on {request.url.path}"
        # Starlette names only the first route's methods; a path served by several routes allows them all
        return JSONResponse({"detail": detail}, status_code=405, headers={"Allow": _allowed(request)})
    return JSONResponse({"detail": detail}, status_code=error.status_code, headers=error.headers)


def _allowed(request: Request) -> str:
    methods: set[str] = set()
    routes = list(request.app.routes)
    while routes:
        route = routes.pop()
        # newer FastAPI keeps an included router as one entry; its own router holds the routes
        included = getattr(route, "original_router", None)
        if included is not None:
            routes.extend(included.routes)
        elif route.matches(request.scope)[0] != Match.NONE:
            methods |= getattr(route, "methods", None) or set()
    return ", ".join(sorted(methods))


async def _invalid_request(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    # only where and what: pydantic's `input` and `ctx` could echo a password or hold unserialisable objects
    problems = [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": str(e.get("type", ""))}
        for e in error.errors()
    ]
    return JSONResponse({"detail": problems}, status_code=422)


async def _login_required(request: Request, error: Exception) -> Response:
    return RedirectResponse("/login", status_code=303)


def install(app: FastAPI) -> None:
    app.add_exception_handler(HTTPException, _http_error)
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_exception_handler(LoginRequired, _login_required)

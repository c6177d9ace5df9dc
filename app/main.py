"""create_app(settings): the web service over one runner, built from the validated targets at start-up.

A targets file that does not load leaves the pod live but not ready (see app.health): the error goes to
the log and to the dashboard, and no run can start until the file is fixed.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

from fastapi import FastAPI
from fastapi.staticfiles import StaticFiles

from app import __version__, target_secrets
from app.alerts import Alerts
from app.auth import Authenticator
from app.checks.base import Target
from app.config import ConfigError, Settings, load_targets
from app.health import PodHealth
from app.history import Flapping, History
from app.metrics import Metrics
from app.runner import Runner, warm_up
from app.sanitization import scrub_logs
from app.schedule import Schedule
from app.store import Store
from app.tokens import GateTokens
from app.web import api, errors, gate, pages, status
from app.web import history as history_routes
from app.web.middleware import BodyLimit, CatchAll, HeadAsGet, SecurityHeaders
from app.web.pod import Pod

MAX_BODY_BYTES = 64 * 1024  # logins and run requests are tiny; nothing here takes an upload
log = logging.getLogger("app")


def create_app(settings: Settings) -> FastAPI:
    targets, config_error = _load(settings.config)
    scrub_logs(secret for target in targets for secret in target.secrets())
    runner = Runner(targets, strict=settings.strict, concurrency=settings.max_concurrent_checks)
    health = PodHealth(config_error=config_error)
    store = Store(settings.data_dir / "history.sqlite3") if settings.data_dir is not None else None
    history = History(
        max_runs=settings.history_runs,
        max_age=timedelta(days=settings.history_days),
        flap=Flapping(settings.flap_changes, timedelta(minutes=settings.flap_window_minutes)),
        store=store,
        targets=[t.name for t in targets],
    )
    metrics = Metrics(lambda: runner.running, configured=len(targets), config_valid=config_error is None)
    pod = Pod(runner, health, metrics, history, GateTokens(store), reload=_reloader(settings.config))
    metrics.follow(history, lambda: pod.schedule.next_at if pod.schedule else None)
    pod.alerts = Alerts.from_settings(settings, metrics.notified)
    if settings.schedule_seconds is not None and targets:
        pod.schedule = Schedule(settings.schedule_seconds, pod.scheduled_run, jitter=settings.schedule_jitter)
    authenticator, generated_password = Authenticator.from_settings(settings)
    if generated_password is not None:
        _announce(settings.auth_username, generated_password)
    if settings.secret_key is None:
        log.info("no TESTPOD_SECRET_KEY given: a random one is used, so sessions end when the pod restarts")
    run_on_start = settings.run_on_start and bool(targets)  # the app keeps no reference to the settings' secrets

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        # before the server listens (so before its startup probe passes), off the event loop
        await asyncio.to_thread(warm_up, targets)
        if run_on_start:
            pod.start_run()  # so the dashboard has a verdict when someone first opens it
        scheduled = asyncio.create_task(pod.schedule.loop()) if pod.schedule is not None else None
        health.started = True
        yield
        if scheduled is not None:
            scheduled.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await scheduled
        if pod.alerts is not None:
            pod.alerts.close()
        if store is not None:
            await asyncio.to_thread(store.close)  # applies the writes still queued

    app = FastAPI(
        title="airia-test-pod",
        version=__version__,
        description="Checks that the infrastructure the Airia platform needs is reachable and configured.",
        lifespan=lifespan,
        # the schema describes every route; it is only served on a workstation (dev mode)
        openapi_url="/openapi.json" if settings.dev_mode else None,
        docs_url=None,  # Swagger UI needs a CDN and inline script, which the CSP forbids
        redoc_url=None,
    )
    app.state.pod = pod
    app.state.authenticator = authenticator
    app.state.cookie_secure = settings.cookie_secure
    errors.install(app)
    # added inside out (the last is the outermost), so even CatchAll's 500 carries the security headers
    app.add_middleware(CatchAll)
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)
    app.add_middleware(SecurityHeaders)
    app.add_middleware(HeadAsGet)
    app.include_router(status.router)
    app.include_router(api.router)
    app.include_router(gate.router)
    app.include_router(history_routes.router)
    app.include_router(pages.router)
    app.mount("/static", StaticFiles(directory=Path(__file__).parent / "web" / "static"), name="static")
    return app


def _load(path: Path | None) -> tuple[list[Target], str | None]:
    if path is None:
        log.warning("no targets file (TESTPOD_CONFIG is not set): the dashboard explains how to add targets")
        return [], None
    try:
        targets = load_targets(path, target_secrets.environ())
    except ConfigError as error:
        log.error("the targets file %s is invalid; the pod will not become ready until it is fixed:\n%s", path, error)
        return [], str(error)
    log.info("loaded %d targets from %s", len(targets), path)
    return targets, None


def _reloader(path: Path | None) -> Callable[[], list[Target]] | None:
    if path is None:
        return None
    return lambda: load_targets(path, target_secrets.environ())


def _announce(username: str, password: str) -> None:
    """The one place a password is ever printed: the generated one, once, for a local start."""
    rule = "=" * 78
    print(
        f"\n{rule}\n"
        "  No TESTPOD_AUTH_PASSWORD was given, so one was generated for this run:\n\n"
        f"      username: {username}\n"
        f"      password: {password}\n\n"
        "  It changes at every restart. Set TESTPOD_AUTH_PASSWORD (or the Helm chart's Secret) to keep one.\n"
        f"{rule}\n",
        file=sys.stderr,
        flush=True,
    )

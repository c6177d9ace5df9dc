"""Command line: `check` runs the targets once and exits with the verdict; `serve` runs the dashboard; `gate`
asks a running pod's readiness gate, for a pipeline or a GitOps hook Job running this image.

Exit codes: 0 ready, 1 not ready, 2 bad usage or bad config, 3 (gate only) the pod cannot be reached or gave an
answer that is not the gate's.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import os
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import NoReturn

from app import __version__
from app.gate_client import (  # the standard library and app.sanitization; httpx only when a call is made
    GATE_TOKEN_ENV,
    GATE_URL_ENV,
    MAX_AGE,
    MAX_TIMEOUT,
    MAX_WAIT,
    TIMEOUT_MARGIN,
    GateCall,
    GateConfigError,
    GateUnreachable,
    ask,
    gate_url,
    read_token,
)

EXIT_READY, EXIT_NOT_READY, EXIT_USAGE, EXIT_UNREACHABLE = 0, 1, 2, 3
DEMO_CONFIG = Path(__file__).parent / "demo-targets.yaml"


SERVE_ENVIRONMENT = """environment (a file named like the setting in TESTPOD_SECRETS_DIR works too):
  TESTPOD_CONFIG              targets file; without one the dashboard explains how to add targets
  TESTPOD_AUTH_USERNAME       login name (default admin)
  TESTPOD_AUTH_PASSWORD       login password, at least 12 characters; unset: one is generated and printed once
  TESTPOD_AUTH_PASSWORD_HASH  or its argon2 hash, from `python -m app hash-password`
  TESTPOD_SECRET_KEY          token signing key, at least 32 characters; unset: random, sessions end at restart
  TESTPOD_SECRETS_DIR         default /etc/airia-test-pod/secrets (auth_password, secret_key, ...)
  TESTPOD_SESSION_MINUTES     how long a login lasts (default 480)
  TESTPOD_RUN_ON_START        check every target once at start-up (default true)
  TESTPOD_STRICT              warnings count as failures (default false)
  TESTPOD_MAX_CONCURRENT_CHECKS  checks at once; the others wait as pending (default 32)
  TESTPOD_COOKIE_SECURE       Secure cookies even over http, behind a TLS-terminating ingress (default false)
  TESTPOD_DEV_MODE            accept weak secrets and serve /openapi.json (default false)
  TESTPOD_SCHEDULE_SECONDS    run every target every N seconds (at least 1; unset: no schedule)
  TESTPOD_SCHEDULE_JITTER     each wait varies by up to this fraction of the interval (default 0.1)
  TESTPOD_HISTORY_RUNS        runs kept in the history (default 200)
  TESTPOD_HISTORY_DAYS        days a run is kept (default 7)
  TESTPOD_FLAP_CHANGES        status changes within the flap window that mark a target flapping (default 3)
  TESTPOD_FLAP_WINDOW_MINUTES the flap window (default 60)
  TESTPOD_DATA_DIR            keep the history and gate tokens in an sqlite file there (unset: memory only)
  TESTPOD_DASHBOARD_URL       the dashboard's address, linked from alerts
  TESTPOD_ALERT_REMINDER_MINUTES  remind every N minutes while not ready (default 240; 0: never)
  TESTPOD_ALERT_SLACK_WEBHOOK_URL / TESTPOD_ALERT_TEAMS_WEBHOOK_URL / TESTPOD_ALERT_WEBHOOK_URL (generic JSON)
                              alert channels; the URLs are secrets
  TESTPOD_ALERT_SMTP_HOST / TESTPOD_ALERT_SMTP_PORT / TESTPOD_ALERT_SMTP_SECURITY (starttls, ssl, none)
  TESTPOD_ALERT_SMTP_USERNAME / TESTPOD_ALERT_SMTP_PASSWORD / TESTPOD_ALERT_EMAIL_FROM / TESTPOD_ALERT_EMAIL_TO (a,b)
                              e-mail alerts
"""


GATE_EPILOG = f"""exit codes: 0 ready, 1 not ready (the verdict and each failing required target, one line each),
  2 bad usage or config (no URL, no token, an unknown target), 3 the pod cannot be reached or its answer is not
  the gate's (a refused token, a server error, no answer within --timeout)

environment:
  {GATE_URL_ENV}    the test pod's base URL, when --url is not given
  {GATE_TOKEN_ENV}  the gate token (a tpgate_ token from the dashboard's Gate tokens page), when --token-file
                      is not given; a token is never taken from the command line, where `ps` would show it
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:  # argparse's own exit code is 2 too; this pins it
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"error: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="python -m app", description="Checks that the infrastructure the Airia platform needs is ready."
    )
    parser.add_argument("--version", action="version", version=f"airia-test-pod {__version__}")
    commands = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    check = commands.add_parser(
        "check",
        help="check every target once and exit with the verdict",
        description="Exit codes: 0 ready, 1 not ready, 2 bad usage or bad config.",
    )
    check.add_argument("--config", help="targets file (default: $TESTPOD_CONFIG, else the built-in demo)")
    check.add_argument("--format", choices=["text", "json", "junit"], default="text")
    check.add_argument("--only", action="append", metavar="NAME", help="check only this target (repeatable)")
    check.add_argument("--strict", action="store_true", help="warnings make the verdict not ready")
    check.add_argument("--output", metavar="FILE", help="write the report to FILE instead of standard output")
    check.add_argument(
        "--validate", action="store_true", help="only load and validate the targets file (exit 0 or 2), check nothing"
    )
    check.add_argument("--concurrency", type=_positive, default=None, metavar="N", help="checks at once (default: 32)")

    serve = commands.add_parser(
        "serve",
        help="run the dashboard, the JSON API and the health probes",
        description="Run the dashboard, the JSON API and the health probes until stopped.",
        epilog=SERVE_ENVIRONMENT,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    serve.add_argument("--host", help="address to listen on (default: $TESTPOD_HOST, else 0.0.0.0)")
    serve.add_argument("--port", type=int, help="port to listen on (default: $PORT, else 8080)")
    serve.add_argument(
        "--forwarded-allow-ips",
        metavar="IPS",
        help="proxies whose X-Forwarded-* headers are trusted, comma-separated (default: $TESTPOD_FORWARDED_ALLOW_IPS)",
    )

    gate = commands.add_parser(
        "gate",
        help="ask a running pod's readiness gate and exit with its verdict (for CI jobs and GitOps hooks)",
        description="Ask the readiness gate of a running test pod and exit with its verdict.",
        epilog=GATE_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    gate.add_argument(
        "--url",
        help=f"the test pod's base URL, e.g. http://readiness-airia-test-pod.ns.svc:8080 (default: ${GATE_URL_ENV})",
    )
    gate.add_argument(
        "--token-file", metavar="FILE", help=f"file holding the gate token (default: the token in ${GATE_TOKEN_ENV})"
    )
    gate.add_argument("--token", nargs="?", action=_RefuseToken, help=argparse.SUPPRESS)
    gate.add_argument(
        "--max-age",
        type=_seconds(MAX_AGE),
        metavar="SECONDS",
        help="results older than this are stale (default: the pod's, 300)",
    )
    gate.add_argument(
        "--wait",
        type=_seconds(MAX_WAIT, zero=True),
        metavar="SECONDS",
        default=0.0,
        help=f"when stale, let the pod run the checks and wait up to this long for them (at most "
        f"{MAX_WAIT:g}; default 0: answer at once)",
    )
    gate.add_argument("--target", action="append", metavar="NAME", help="judge only this target (repeatable)")
    gate.add_argument("--strict", action="store_true", help="warnings block too (default: the pod's setting)")
    gate.add_argument(
        "--timeout",
        type=_seconds(MAX_TIMEOUT),
        metavar="SECONDS",
        help=f"give up after this long, whatever happens (default: --wait + {TIMEOUT_MARGIN:g})",
    )
    gate.add_argument("--ca-file", metavar="FILE", help="PEM bundle of the CA that signed an https URL's certificate")

    commands.add_parser(
        "hash-password",
        help="read a password from standard input and print its argon2 hash for TESTPOD_AUTH_PASSWORD_HASH",
    )
    return parser


def _positive(text: str) -> int:
    if not text.isdigit() or not 1 <= int(text) <= 1000:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number from 1 to 1000")
    return int(text)


class _RefuseToken(argparse.Action):
    """A token on the command line would show in `ps` and in a Job's spec: refused, and never repeated."""

    def __call__(self, parser: argparse.ArgumentParser, *args: object, **kwargs: object) -> None:
        parser.error(f"a gate token is never taken from the command line; use --token-file FILE or ${GATE_TOKEN_ENV}")


def _seconds(limit: float, *, zero: bool = False) -> Callable[[str], float]:
    """An argparse type for a number of seconds up to `limit`, above 0 (or from 0 with `zero`)."""
    bounds = f"from 0 to {limit:g}" if zero else f"more than 0 and at most {limit:g}"

    def parse(text: str) -> float:
        try:
            value = float(text)
        except ValueError:
            value = math.nan  # refused below, like inf: every comparison with nan is false
        if not (0 <= value <= limit and (zero or value > 0)):
            raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds {bounds}")
        return value

    return parse


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.command == "check":
        return check(args)
    if args.command == "serve":
        return serve(args)
    if args.command == "gate":
        return gate(args)
    if args.command == "hash-password":
        return hash_password()
    return EXIT_USAGE  # pragma: no cover - argparse rejects unknown commands


def check(args: argparse.Namespace) -> int:
    from app import report, target_secrets
    from app.config import ConfigError, load_targets
    from app.results import Result
    from app.runner import DEFAULT_CONCURRENCY, Runner, run_targets
    from app.sanitization import scrub_logs

    config = args.config or os.environ.get("TESTPOD_CONFIG")
    if not config:
        config = str(DEMO_CONFIG)
        print(f"no --config and no TESTPOD_CONFIG: checking the built-in demo targets ({config})", file=sys.stderr)
    try:
        targets = load_targets(config, target_secrets.environ())
    except ConfigError as error:
        print(f"config error in {config}:\n{error}", file=sys.stderr)
        return EXIT_USAGE
    if args.validate:
        print(f"{config}: {len(targets)} target(s), all valid")
        return EXIT_READY
    # libraries log their own warnings (a driver quoting the server) on stderr: never with a secret in them
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    scrub_logs(secret for target in targets for secret in target.secrets())
    runner = Runner(targets, strict=args.strict)
    try:
        selected = runner.select(args.only)
    except KeyError as error:
        print(f"error: --only names no configured target: {error.args[0]}", file=sys.stderr)
        return EXIT_USAGE
    if not selected:
        print(f"config error in {config}: no targets configured", file=sys.stderr)
        return EXIT_USAGE

    live = sys.stderr.isatty() and args.format == "text" and not args.output

    def progress(result: Result) -> None:
        if live:
            print(f"  {result.status.upper():7} {result.name} ({result.duration_ms / 1000:.2f}s)", file=sys.stderr)

    concurrency = args.concurrency or DEFAULT_CONCURRENCY
    run = asyncio.run(run_targets(selected, strict=args.strict, on_result=progress, concurrency=concurrency))
    rendered = report.RENDERERS[args.format].render(run)
    if args.output:
        try:
            Path(args.output).write_text(rendered, encoding="utf-8")
        except OSError as error:
            print(f"error: cannot write {args.output}: {error.strerror or type(error).__name__}", file=sys.stderr)
            return EXIT_USAGE
    else:
        sys.stdout.write(rendered)
    return EXIT_READY if run.verdict == "ready" else EXIT_NOT_READY


def gate(args: argparse.Namespace) -> int:
    params = [("wait", f"{args.wait:g}")] if args.wait else []
    if args.max_age is not None:
        params.append(("max_age", f"{args.max_age:g}"))
    params += [("target", name) for name in args.target or ()]
    if args.strict:
        params.append(("strict", "true"))
    timeout = args.timeout or args.wait + TIMEOUT_MARGIN
    try:
        if timeout <= args.wait:
            raise GateConfigError(f"--timeout {timeout:g} must be longer than --wait {args.wait:g}")
        call = GateCall(
            gate_url(args.url or os.environ.get(GATE_URL_ENV, "")),
            read_token(args.token_file),
            tuple(params),
            timeout,
            args.ca_file,
        )
        answer = ask(call)
    except GateConfigError as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_USAGE
    except GateUnreachable as error:
        print(f"error: {error}", file=sys.stderr)
        return EXIT_UNREACHABLE
    print("\n".join(answer.lines))
    return EXIT_READY if answer.ready else EXIT_NOT_READY


def serve(args: argparse.Namespace) -> int:
    import uvicorn
    from pydantic import ValidationError

    from app.config import Settings, describe_settings_error

    overrides = {"host": args.host, "port": args.port, "forwarded_allow_ips": args.forwarded_allow_ips}
    try:
        settings = Settings(**{key: value for key, value in overrides.items() if value is not None})
    except ValidationError as error:
        print(f"refusing to start:\n{describe_settings_error(error)}", file=sys.stderr)
        return EXIT_USAGE
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    # these log every request URL (whose query may carry a token) and header set at INFO: keep them quiet
    for chatty in ("httpx", "azure.core.pipeline.policies.http_logging_policy"):
        logging.getLogger(chatty).setLevel(logging.WARNING)

    from app.main import create_app

    uvicorn.run(
        create_app(settings),
        host=settings.host,
        port=settings.port,
        # behind an ingress, its X-Forwarded-Proto decides whether cookies are Secure; nobody else is believed
        proxy_headers=bool(settings.forwarded_allow_ips),
        forwarded_allow_ips=settings.forwarded_allow_ips or None,
        access_log=False,  # probes and polling would drown the log; runs and logins are logged instead
        server_header=False,
        log_level="info",
    )
    return EXIT_READY


def hash_password() -> int:
    import getpass

    from app.auth import hash_password as argon2_hash

    password = getpass.getpass("password: ") if sys.stdin.isatty() else sys.stdin.readline().rstrip("\n")
    if not password:
        print("error: empty password", file=sys.stderr)
        return EXIT_USAGE
    print(argon2_hash(password))
    return EXIT_READY

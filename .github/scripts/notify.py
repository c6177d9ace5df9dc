"""Release and rollback notifications: Slack, Microsoft Teams and email, built from one structured result.

Each channel is configured by environment variables (the workflow maps its secrets onto them). A channel whose
settings are missing is skipped with a notice; a channel that fails gets a warning. Either way the exit code is
0: a notification never changes the outcome of the workflow that sends it. Webhook URLs are secrets and never
appear in the output.

    SLACK_WEBHOOK_URL   Slack incoming webhook (Block Kit message)
    TEAMS_WEBHOOK_URL   Teams "Workflows" webhook (Adaptive Card)
    SMTP_HOST, SMTP_PORT (587), SMTP_SECURITY (starttls | ssl | none), SMTP_USERNAME, SMTP_PASSWORD,
    NOTIFY_EMAIL_FROM, NOTIFY_EMAIL_TO (comma-separated)

    python .github/scripts/notify.py --version 1.4.2 --digest sha256:... --environment staging \
        --outcome success --run-url https://github.com/ORG/REPO/actions/runs/1
"""

from __future__ import annotations

import argparse
import json
import os
import smtplib
import ssl
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any

import httpx

GOOD_OUTCOMES = frozenset({"success", "released"})


@dataclass(frozen=True)
class Result:
    version: str
    digest: str
    environment: str
    outcome: str  # success | released (not deployed) | failure | cancelled | rolled_back | rollback_failed
    rollback: str = ""  # what a rollback did, e.g. "rolled back to revision 4"; "" when none ran
    run_url: str = ""

    @property
    def title(self) -> str:
        return f"airia-test-pod {self.version} → {self.environment}: {self.outcome.replace('_', ' ')}"

    def facts(self) -> list[tuple[str, str]]:
        return [
            ("Version", self.version),
            ("Environment", self.environment),
            ("Outcome", self.outcome),
            ("Rollback", self.rollback or "none"),
            ("Image digest", self.digest or "unknown"),
        ]


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def release_outcome(needs: Mapping[str, Any]) -> tuple[str, str]:
    """(outcome, rollback) of a release run from its jobs' results (`toJSON(needs)` in the workflow)."""
    results = {name: str(job.get("result", "")) for name, job in needs.items()}
    earlier = {name: result for name, result in results.items() if name not in ("deploy", "rollback")}
    if "cancelled" in earlier.values():
        return "cancelled", ""
    if "failure" in earlier.values():
        failed = ", ".join(sorted(name for name, result in earlier.items() if result == "failure"))
        return "failure", f"not needed: nothing was deployed ({failed} failed)"
    deploy = needs.get("deploy", {})
    if deploy.get("outputs", {}).get("rollback") == "true":
        if results.get("rollback") == "success":
            return "rolled_back", "the health gate failed; the previous release is running again"
        return "rollback_failed", f"rollback {results.get('rollback') or 'did not run'}: act now (see ROLLBACK.md)"
    if results.get("deploy") == "failure":
        return "failure", "not attempted: the deploy job failed before the health gate"
    return ("success" if results.get("deploy") == "success" else "released"), ""


def slack_payload(result: Result) -> dict[str, Any]:
    """A Block Kit message; `text` is the fallback shown in notifications."""
    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": result.title[:150]}},
        {
            "type": "section",
            "fields": [
                {"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(value)}"} for name, value in result.facts()
            ],
        },
    ]
    if result.run_url:
        blocks.append(
            {
                "type": "actions",
                "elements": [
                    {"type": "button", "text": {"type": "plain_text", "text": "Open the run"}, "url": result.run_url}
                ],
            }
        )
    return {"text": _slack_escape(result.title), "blocks": blocks}


def teams_payload(result: Result) -> dict[str, Any]:
    """An Adaptive Card wrapped the way a Teams Workflows webhook expects it."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": result.title,
                "size": "Large",
                "weight": "Bolder",
                "wrap": True,
                "color": "Good" if result.outcome in GOOD_OUTCOMES else "Attention",
            },
            {"type": "FactSet", "facts": [{"title": name, "value": value} for name, value in result.facts()]},
        ],
    }
    if result.run_url:
        card["actions"] = [{"type": "Action.OpenUrl", "title": "Open the run", "url": result.run_url}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def email_message(result: Result, sender: str, recipients: Sequence[str]) -> EmailMessage:
    message = EmailMessage()
    message["Subject"] = result.title
    message["From"] = sender
    message["To"] = ", ".join(recipients)
    body = "\n".join(f"{name}: {value}" for name, value in result.facts())
    message.set_content(f"{result.title}\n\n{body}\n" + (f"\nRun: {result.run_url}\n" if result.run_url else ""))
    return message


def send_webhook(client: httpx.Client, url: str, payload: Mapping[str, Any]) -> str | None:
    """POST the payload; None on success, else a reason that never contains the (secret) URL."""
    try:
        response = client.post(url, json=payload)
    except httpx.HTTPError as error:
        return type(error).__name__
    return None if response.is_success else f"HTTP {response.status_code}"


def send_email(settings: Mapping[str, str], message: EmailMessage, timeout: float = 30.0) -> str | None:
    """Deliver over SMTP; None on success, else the reason."""
    host, security = settings["SMTP_HOST"], settings.get("SMTP_SECURITY", "starttls")
    port = int(settings.get("SMTP_PORT") or (465 if security == "ssl" else 587))
    try:
        smtp = (
            smtplib.SMTP_SSL(host, port, timeout=timeout, context=ssl.create_default_context())
            if security == "ssl"
            else smtplib.SMTP(host, port, timeout=timeout)
        )
        with smtp:
            if security == "starttls":
                smtp.starttls(context=ssl.create_default_context())
            if settings.get("SMTP_USERNAME"):
                smtp.login(settings["SMTP_USERNAME"], settings.get("SMTP_PASSWORD", ""))
            smtp.send_message(message)
    except (OSError, smtplib.SMTPException) as error:
        code = getattr(error, "smtp_code", None)
        return f"{type(error).__name__}" + (f" (SMTP {code})" if code else "")
    return None


def notify(result: Result, env: Mapping[str, str], client: httpx.Client) -> dict[str, str]:
    """Send on every configured channel. Returns channel → "sent" | "skipped: …" | "failed: …"."""
    outcomes: dict[str, str] = {}
    for channel, variable, payload in (
        ("slack", "SLACK_WEBHOOK_URL", slack_payload(result)),
        ("teams", "TEAMS_WEBHOOK_URL", teams_payload(result)),
    ):
        url = env.get(variable, "")
        if not url:
            outcomes[channel] = f"skipped: {variable} is not set"
            continue
        error = send_webhook(client, url, payload)
        outcomes[channel] = f"failed: {error}" if error else "sent"
    missing = [name for name in ("SMTP_HOST", "NOTIFY_EMAIL_FROM", "NOTIFY_EMAIL_TO") if not env.get(name)]
    if missing:
        outcomes["email"] = f"skipped: {', '.join(missing)} not set"
    elif env.get("SMTP_SECURITY", "starttls") not in ("starttls", "ssl", "none"):
        outcomes["email"] = "failed: SMTP_SECURITY must be starttls, ssl or none"
    else:
        recipients = [address.strip() for address in env["NOTIFY_EMAIL_TO"].split(",") if address.strip()]
        error = send_email(env, email_message(result, env["NOTIFY_EMAIL_FROM"], recipients))
        outcomes["email"] = f"failed: {error}" if error else "sent"
    return outcomes


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="notify.py", description=__doc__.split("\n")[0])
    parser.add_argument("--version", required=True)
    parser.add_argument("--digest", default="")
    parser.add_argument("--environment", required=True)
    parser.add_argument("--outcome", help="success | failure | rolled_back | ... (or give --needs)")
    parser.add_argument("--needs", help="the release workflow's `toJSON(needs)`: outcome and rollback follow from it")
    parser.add_argument("--rollback", default="")
    parser.add_argument("--run-url", default="")
    args = parser.parse_args(argv)
    outcome, rollback = args.outcome, args.rollback
    if args.needs:
        try:
            outcome, rollback = release_outcome(json.loads(args.needs))
        except (ValueError, AttributeError) as error:
            outcome = "unknown"
            print(f"::warning::cannot read the jobs' results ({type(error).__name__})")
    if not outcome:
        parser.error("give --outcome or --needs")
    result = Result(args.version, args.digest, args.environment, outcome, rollback, args.run_url)
    with httpx.Client(timeout=15) as client:
        outcomes = notify(result, os.environ, client)
    for channel, status in outcomes.items():
        level = "notice" if status.startswith(("sent", "skipped")) else "warning"
        print(f"::{level}::{channel} notification {status}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

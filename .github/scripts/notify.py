"""Release and rollback notifications: Slack, Microsoft Teams and email, built from one structured result.

The payloads and the delivery are the app's own notification module (app/notify.py), the one the pod's alerts
use too; this script only knows what a release's outcome is and which environment variables configure it.

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
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx

# The workflow runs this file from the repository root as a script: the app's package is two levels up.
sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from app.notify import Message, NotConfigured, Smtp, send_email, send_webhook, slack_payload, teams_payload

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

    def message(self) -> Message:
        return Message(
            title=self.title,
            facts=self.facts(),
            good=self.outcome in GOOD_OUTCOMES,
            link=self.run_url,
            link_text="Open the run",
            event=self.outcome,
        )


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


def notify(result: Result, env: Mapping[str, str], client: httpx.Client) -> dict[str, str]:
    """Send on every configured channel. Returns channel → "sent" | "skipped: …" | "failed: …"."""
    outcomes: dict[str, str] = {}
    message = result.message()
    for channel, variable, payload in (
        ("slack", "SLACK_WEBHOOK_URL", slack_payload(message)),
        ("teams", "TEAMS_WEBHOOK_URL", teams_payload(message)),
    ):
        url = env.get(variable, "")
        if not url:
            outcomes[channel] = f"skipped: {variable} is not set"
            continue
        error = send_webhook(client, url, payload)
        outcomes[channel] = f"failed: {error}" if error else "sent"
    try:
        smtp = Smtp.from_env(env)
    except NotConfigured as error:
        outcomes["email"] = f"skipped: {error}"
    except ValueError as error:
        outcomes["email"] = f"failed: {error}"
    else:
        error_text = send_email(smtp, message)
        outcomes["email"] = f"failed: {error_text}" if error_text else "sent"
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

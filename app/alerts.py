"""Alerts on change, not on every run: after each run, one message when the verdict changed, a required target
changed status or a warning newly appeared; a reminder while the verdict stays not ready; a "recovered" message
when targets pass again. Delivered through app.notify on every configured channel.

Delivery happens in a thread per channel with short timeouts: a channel that fails or stalls never
delays a run, the event loop or a probe. Results are redacted before they get here; the channels' own secrets
(webhook URLs, the SMTP password) are scrubbed from every reason a failure gives.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
from datetime import datetime, timedelta

import httpx

from app.checks.base import Status
from app.config import Settings
from app.history import Change, TargetState
from app.notify import Message, Smtp, send_email, send_webhook, slack_payload, teams_payload, webhook_payload
from app.results import Result, Verdict
from app.sanitization import redact

log = logging.getLogger("app.alerts")
TIMEOUT = 10.0  # seconds per delivery

Delivered = Callable[[str, bool], None]  # channel, sent


@dataclass(frozen=True)
class Channel:
    name: str  # slack | teams | webhook | email
    url: str = ""  # a webhook's URL (a secret)
    smtp: Smtp | None = None
    timeout: float = TIMEOUT

    def deliver(self, message: Message) -> str | None:
        """Send; None on success, else the reason."""
        if self.smtp is not None:
            return send_email(self.smtp, message, timeout=self.timeout)
        payload = {"slack": slack_payload, "teams": teams_payload}.get(self.name, webhook_payload)(message)
        with httpx.Client(timeout=self.timeout) as client:
            return send_webhook(client, self.url, payload)

    @property
    def secrets(self) -> list[str]:
        return [self.url, self.smtp.password if self.smtp else ""]


def decide(
    changes: Sequence[Change],
    before: Verdict | None,
    after: Verdict,
    failing: Sequence[TargetState],
    link: str,
) -> Message | None:
    """The one message a run calls for, or None. `failing`: the required targets that block readiness now."""
    worth = [c for c in changes if _worth_telling(c)]
    verdict_changed = before is not None and before != after
    if not worth and not verdict_changed:
        return None
    recovered = [c for c in worth if c.after == Status.PASSED]
    if verdict_changed and after == Verdict.READY:
        title, event = "airia-test-pod: ready again", "recovered"
    elif verdict_changed:
        title, event = "airia-test-pod: not ready", "changed"
    elif worth and len(recovered) == len(worth):
        title, event = f"airia-test-pod: recovered: {', '.join(c.name for c in recovered)}", "recovered"
    else:
        title, event = f"airia-test-pod: changed: {', '.join(c.name for c in worth)}", "changed"
    was = f" (was {before.value.replace('_', ' ')})" if verdict_changed and before else ""
    facts = [("Verdict", after.value.replace("_", " ") + was)]
    if failing:
        facts.append(("Blocking", ", ".join(s.result.name for s in failing)))
    return Message(
        title=title,
        facts=facts,
        good=after == Verdict.READY and not any(c.after != Status.PASSED for c in worth),
        link=link,
        link_text="Open the dashboard",
        event=event,
        sections=[_target_facts(c.name, c.after, c.result, c.before) for c in worth],
    )


def reminder(failing: Sequence[TargetState], since: datetime, link: str) -> Message:
    return Message(
        title="airia-test-pod: still not ready",
        facts=[("Verdict", "not ready"), ("Not ready since", since.isoformat(timespec="seconds"))],
        good=False,
        link=link,
        link_text="Open the dashboard",
        event="reminder",
        sections=[_target_facts(s.result.name, s.result.status, s.result, None) for s in failing],
    )


def _worth_telling(change: Change) -> bool:
    if change.before is None:  # first check since the pod started without a history: tell only of trouble
        return (change.result.required and change.after == Status.FAILED) or change.after == Status.WARNING
    if change.after == Status.WARNING:  # a warning newly appears (a certificate inside its window …)
        return True
    return change.result.required


def _target_facts(name: str, status: Status, result: Result, before: Status | None) -> list[tuple[str, str]]:
    was = f" (was {before.value})" if before else ""
    facts = [("Target", f"{name} ({result.kind})"), ("Status", status.value + was)]
    if status != Status.PASSED:
        facts += [("Stage", result.stage.value if result.stage else "-"), ("Cause", result.cause)]
        if result.remediation:
            facts.append(("What to do", result.remediation))
    return facts


class Alerts:
    """Decides after each run what to tell, and hands it to the channels off the event loop."""

    def __init__(
        self,
        channels: Sequence[Channel],
        *,
        reminder_after: timedelta | None,
        dashboard_url: str,
        on_delivery: Delivered | None = None,
        clock: Callable[[], datetime] = lambda: datetime.now().astimezone(),
    ) -> None:
        self.channels = list(channels)
        self.reminder_after = reminder_after
        self.dashboard_url = dashboard_url.rstrip("/")
        self.on_delivery = on_delivery
        self.clock = clock
        self.not_ready_since: datetime | None = None
        self.last_told: datetime | None = None
        # one thread per channel: its messages arrive in order, and a stalled channel holds up only itself
        self._queues = {
            c.name: ThreadPoolExecutor(max_workers=1, thread_name_prefix=f"alert-{c.name}") for c in channels
        }
        self.pending: list[Future[None]] = []

    @classmethod
    def from_settings(cls, settings: Settings, on_delivery: Delivered | None = None) -> Alerts | None:
        """The alerts of the configured channels; None when no channel is configured."""
        channels = [
            Channel(name, url=secret.get_secret_value())
            for name, secret in (
                ("slack", settings.alert_slack_webhook_url),
                ("teams", settings.alert_teams_webhook_url),
                ("webhook", settings.alert_webhook_url),
            )
            if secret is not None
        ]
        if settings.alert_smtp_host and settings.alert_email_from and settings.alert_email_to:
            smtp = Smtp(
                host=settings.alert_smtp_host,
                sender=settings.alert_email_from,
                recipients=[a.strip() for a in settings.alert_email_to.split(",") if a.strip()],
                port=settings.alert_smtp_port,
                security=settings.alert_smtp_security,
                username=settings.alert_smtp_username or "",
                password=settings.alert_smtp_password.get_secret_value() if settings.alert_smtp_password else "",
            )
            channels.append(Channel("email", smtp=smtp))
        if not channels:
            return None
        minutes = settings.alert_reminder_minutes
        return cls(
            channels,
            reminder_after=timedelta(minutes=minutes) if minutes else None,
            dashboard_url=settings.dashboard_url or "",
            on_delivery=on_delivery,
        )

    def after_run(
        self, changes: Sequence[Change], before: Verdict | None, after: Verdict, failing: Sequence[TargetState]
    ) -> Message | None:
        """Send what this run calls for; returns the message (None: nothing to tell)."""
        now = self.clock()
        if after == Verdict.READY:
            self.not_ready_since = None
        elif self.not_ready_since is None:
            self.not_ready_since = now
        names = {c.name for c in changes}
        link = self.dashboard_url + (f"/targets/{next(iter(names))}" if len(names) == 1 else "/")
        message = decide(changes, before, after, failing, link if self.dashboard_url else "")
        if (
            message is None
            and self.not_ready_since is not None
            and self.reminder_after is not None
            and now - (self.last_told or self.not_ready_since) >= self.reminder_after
        ):
            message = reminder(failing, self.not_ready_since, self.dashboard_url + "/" if self.dashboard_url else "")
        if message is not None:
            self.last_told = now
            self.send(message)
        return message

    def send(self, message: Message) -> None:
        self.pending = [f for f in self.pending if not f.done()]
        for channel in self.channels:
            self.pending.append(self._queues[channel.name].submit(self._deliver, channel, message))

    def _deliver(self, channel: Channel, message: Message) -> None:
        try:
            error = channel.deliver(message)
        except Exception as raised:  # a bug in a payload must not kill the pool's thread silently
            error = type(raised).__name__
        if error is None:
            log.info("%s notification sent: %s", channel.name, message.title)
        else:
            log.warning("%s notification failed: %s", channel.name, redact(error, channel.secrets))
        if self.on_delivery is not None:
            self.on_delivery(channel.name, error is None)

    def close(self) -> None:
        for queue in self._queues.values():
            queue.shutdown(wait=False, cancel_futures=True)

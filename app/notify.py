"""Notifications to Slack, Microsoft Teams, a generic webhook and e-mail, all built from one `Message`.

The one notification module of the project: the pod's alerts (app.alerts) and the release pipeline
(.github/scripts/notify.py) both build their payloads and deliver them here. It needs only the standard
library and httpx, which the pipeline installs without the rest of the app. Webhook URLs and SMTP passwords
are secrets: no reason a sender returns ever contains one.
"""

from __future__ import annotations

import smtplib
import ssl
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from email.message import EmailMessage
from typing import Any, Literal

import httpx

SmtpSecurity = Literal["starttls", "ssl", "none"]
SMTP_SECURITY: tuple[SmtpSecurity, ...] = ("starttls", "ssl", "none")


@dataclass(frozen=True)
class Message:
    title: str
    facts: Sequence[tuple[str, str]]  # name, value: in this order on every channel
    good: bool  # green in Teams; a failure or a rollback is flagged for attention
    link: str = ""
    link_text: str = "Open"
    event: str = ""  # machine-readable, for the generic webhook: e.g. "changed", "reminder", "recovered"
    sections: Sequence[Sequence[tuple[str, str]]] = ()  # further groups of facts, e.g. one per changed target


def _slack_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def slack_payload(message: Message) -> dict[str, Any]:
    """A Block Kit message; `text` is the fallback shown in notifications."""

    def section(facts: Sequence[tuple[str, str]]) -> dict[str, Any]:
        # Slack allows 10 fields per section, 2000 characters each
        fields = [{"type": "mrkdwn", "text": f"*{name}*\n{_slack_escape(value)}"[:2000]} for name, value in facts]
        return {"type": "section", "fields": fields[:10]}

    blocks: list[dict[str, Any]] = [
        {"type": "header", "text": {"type": "plain_text", "text": message.title[:150]}},
        *(section(group) for group in (message.facts, *message.sections) if group),
    ]
    if message.link:
        button = {"type": "button", "text": {"type": "plain_text", "text": message.link_text}, "url": message.link}
        blocks.append({"type": "actions", "elements": [button]})
    return {"text": _slack_escape(message.title), "blocks": blocks[:50]}


def teams_payload(message: Message) -> dict[str, Any]:
    """An Adaptive Card wrapped the way a Teams Workflows webhook expects it."""
    card: dict[str, Any] = {
        "$schema": "http://adaptivecards.io/schemas/adaptive-card.json",
        "type": "AdaptiveCard",
        "version": "1.4",
        "body": [
            {
                "type": "TextBlock",
                "text": message.title,
                "size": "Large",
                "weight": "Bolder",
                "wrap": True,
                "color": "Good" if message.good else "Attention",
            },
            *(
                {"type": "FactSet", "facts": [{"title": name, "value": value} for name, value in group]}
                for group in (message.facts, *message.sections)
                if group
            ),
        ],
    }
    if message.link:
        card["actions"] = [{"type": "Action.OpenUrl", "title": message.link_text, "url": message.link}]
    return {
        "type": "message",
        "attachments": [
            {"contentType": "application/vnd.microsoft.card.adaptive", "contentUrl": None, "content": card}
        ],
    }


def webhook_payload(message: Message) -> dict[str, Any]:
    """Plain JSON for any receiver (a chat bridge, an incident tool, a script)."""
    return {
        "event": message.event,
        "title": message.title,
        "good": message.good,
        "facts": dict(message.facts),
        "sections": [dict(group) for group in message.sections],
        "link": message.link or None,
    }


def email_message(message: Message, sender: str, recipients: Sequence[str]) -> EmailMessage:
    email = EmailMessage()
    email["Subject"] = message.title
    email["From"] = sender
    email["To"] = ", ".join(recipients)
    groups = ["\n".join(f"{name}: {value}" for name, value in group) for group in (message.facts, *message.sections)]
    link = f"\n{message.link_text}: {message.link}\n" if message.link else ""
    email.set_content(f"{message.title}\n\n" + "\n\n".join(g for g in groups if g) + "\n" + link)
    return email


def send_webhook(client: httpx.Client, url: str, payload: Mapping[str, Any]) -> str | None:
    """POST the payload; None on success, else a reason that never contains the (secret) URL."""
    try:
        response = client.post(url, json=payload)
    except httpx.HTTPError as error:
        return type(error).__name__
    return None if response.is_success else f"HTTP {response.status_code}"


class NotConfigured(Exception):
    """A channel's settings are absent: the channel is off, which is not a failure."""


@dataclass(frozen=True)
class Smtp:
    host: str
    sender: str
    recipients: Sequence[str]
    port: int | None = None  # None: 465 for ssl, else 587
    security: SmtpSecurity = "starttls"
    username: str = ""
    password: str = ""

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> Smtp:
        """From SMTP_HOST, SMTP_PORT, SMTP_SECURITY, SMTP_USERNAME, SMTP_PASSWORD, NOTIFY_EMAIL_FROM, NOTIFY_EMAIL_TO.

        Raises NotConfigured naming what is missing, ValueError naming what is wrong.
        """
        missing = [name for name in ("SMTP_HOST", "NOTIFY_EMAIL_FROM", "NOTIFY_EMAIL_TO") if not env.get(name)]
        if missing:
            raise NotConfigured(f"{', '.join(missing)} not set")
        security = env.get("SMTP_SECURITY") or "starttls"
        if security not in SMTP_SECURITY:
            raise ValueError("SMTP_SECURITY must be starttls, ssl or none")
        return cls(
            host=env["SMTP_HOST"],
            sender=env["NOTIFY_EMAIL_FROM"],
            recipients=[address.strip() for address in env["NOTIFY_EMAIL_TO"].split(",") if address.strip()],
            port=_port(env.get("SMTP_PORT", "")),
            security=security,
            username=env.get("SMTP_USERNAME", ""),
            password=env.get("SMTP_PASSWORD", ""),
        )


def _port(text: str) -> int | None:
    if not text:
        return None
    if not text.isdigit() or not 1 <= int(text) <= 65535:
        raise ValueError("SMTP_PORT must be a port number, 1-65535")
    return int(text)


def send_email(smtp: Smtp, message: Message, timeout: float = 30.0) -> str | None:
    """Deliver over SMTP; None on success, else the reason."""
    port = smtp.port or (465 if smtp.security == "ssl" else 587)
    try:
        client = (
            smtplib.SMTP_SSL(smtp.host, port, timeout=timeout, context=ssl.create_default_context())
            if smtp.security == "ssl"
            else smtplib.SMTP(smtp.host, port, timeout=timeout)
        )
        with client:
            if smtp.security == "starttls":
                client.starttls(context=ssl.create_default_context())
            if smtp.username:
                client.login(smtp.username, smtp.password)
            client.send_message(email_message(message, smtp.sender, smtp.recipients))
    except (OSError, smtplib.SMTPException) as error:
        code = getattr(error, "smtp_code", None)
        return f"{type(error).__name__}" + (f" (SMTP {code})" if code else "")
    return None

"""Keeping secrets out of outputs, and untrusted remote text readable and harmless."""

from __future__ import annotations

import re

REDACTED = "***"
MAX_TEXT = 500
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")
_URL_CREDENTIALS = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)[^/\s:@]+:[^/\s@]+@")


def redact(text: str, secrets: list[str]) -> str:
    """Replace every known secret (longest first, so one that contains another goes whole) and URL passwords."""
    for secret in sorted(secrets, key=len, reverse=True):
        if secret:
            text = text.replace(secret, REDACTED)
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def clean_remote_text(text: str, limit: int = MAX_TEXT) -> str:
    """One printable line from a remote server's words: control characters dropped, length bounded."""
    text = _CONTROL.sub(" ", text).replace("\n", " ").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"

"""Keeping secrets out of outputs, and untrusted remote text readable and harmless.

A remote server may echo a secret in any form: raw, escaped inside JSON or a Python repr, percent-encoded in a
URL, escaped in HTML. Every form is scrubbed, and before any text is cut to length: a secret cut in half is no
longer a match.
The runner puts the secrets of the target being checked in scope of its check thread (`scrubbing`), so the
shortening every check applies to remote text (`clean_remote_text`) scrubs first.
"""

from __future__ import annotations

import html
import json
import logging
import re
import traceback
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import lru_cache
from urllib.parse import quote, quote_plus

REDACTED = "***"
MAX_TEXT = 500
MIN_FRAGMENT = 4  # the shortest start of a secret recognised before a remote side's own `…`
# C0 and C1 controls (a C1 CSI starts a terminal escape as ESC [ does) and the bidirectional marks, overrides and
# isolates that make a line read other than it is
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069]")
# A scheme starts where a run of scheme characters starts (the lookbehind) and is taken whole (possessive): a try
# at every position of a long run of letters made this quadratic, minutes for a hostile megabyte.
_URL_CREDENTIALS = re.compile(r"(?<![a-zA-Z0-9+.-])(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*+://)[^/\s:@]++:[^/\s@]+@")
_TRAILING_ELLIPSIS = re.compile(r"(?:…|\.\.\.)$")
_in_scope: ContextVar[tuple[str, ...]] = ContextVar("secrets_in_scope", default=())


@lru_cache(maxsize=1024)
def encoded_forms(secret: str) -> tuple[str, ...]:
    """The secret as a remote server may echo it, and each of those inside a Python repr (drivers log exceptions
    whose repr quotes the server's words), longest first."""
    escaped = json.dumps(secret)[1:-1]
    echoed = {
        secret,
        escaped,
        escaped.replace("/", "\\/"),
        json.dumps(secret, ensure_ascii=False)[1:-1],
        quote(secret, safe=""),
        quote(secret, safe="").lower(),  # percent-encoding with lower-case hex digits
        quote(secret, safe="/:"),
        quote_plus(secret),
        html.escape(secret),
        html.escape(secret, quote=False),
    }
    forms = echoed | {repr(form)[1:-1] for form in echoed} | {repr(form + "'")[1:-2] for form in echoed}
    return tuple(sorted(forms, key=len, reverse=True))


def redact(text: str, secrets: Iterable[str]) -> str:
    """Replace every known secret in every encoded form (longest first, so one that contains another goes whole),
    a secret's start that a remote side cut off, and URL passwords."""
    forms = sorted({form for secret in secrets if secret for form in encoded_forms(secret)}, key=len, reverse=True)
    for form in forms:
        text = text.replace(form, REDACTED)
    for form in forms:
        text = _redact_cut_edges(text, form)
    return _URL_CREDENTIALS.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def _redact_cut_edges(text: str, form: str) -> str:
    """A remote side that cut its text in the middle of a secret and said so (`…`, `...`): the secret's first
    part then ends the text. Without that mark, an ending that merely resembles a secret's start stays."""
    end = _TRAILING_ELLIPSIS.search(text)
    if end is None:
        return text
    body = text[: end.start()]
    for size in range(len(form) - 1, MIN_FRAGMENT - 1, -1):
        if body.endswith(form[:size]):
            return body[:-size] + REDACTED + end.group()
    return text


@contextmanager
def scrubbing(secrets: Iterable[str]) -> Iterator[None]:
    """Within this block (one check's thread), clean_remote_text scrubs these secrets before it cuts."""
    token = _in_scope.set(tuple(s for s in secrets if s))
    try:
        yield
    finally:
        _in_scope.reset(token)


def clean_remote_text(text: str, limit: int = MAX_TEXT) -> str:
    """One printable line from a remote server's words: secrets scrubbed, control characters dropped, length
    bounded, in that order."""
    text = redact(text, _in_scope.get())
    text = _CONTROL.sub(" ", text).replace("\n", " ").strip()
    return text if len(text) <= limit else text[: limit - 1] + "…"


class LogScrubber(logging.Filter):
    """Scrubs every configured secret from log records, whichever thread logs them: a driver logs the server's
    words (an echoed password) from threads of its own, with its traceback."""

    def __init__(self) -> None:
        super().__init__()
        self.secrets: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if self.secrets:
            text = record.getMessage()
            if record.exc_info:
                text += "\n" + "".join(traceback.format_exception(*record.exc_info)).rstrip()
            record.msg, record.args, record.exc_info, record.exc_text = redact(text, self.secrets), (), None, None
        return True


_log_scrubber = LogScrubber()


def scrub_logs(secrets: Iterable[str]) -> None:
    """Keep `secrets` out of everything the root logger's handlers write (the server's log, the CLI's stderr)."""
    _log_scrubber.secrets.update(s for s in secrets if s)
    for handler in logging.getLogger().handlers:
        if _log_scrubber not in handler.filters:
            handler.addFilter(_log_scrubber)

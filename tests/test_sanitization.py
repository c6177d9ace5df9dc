"""Redaction before cutting, in every encoded form: an echoed secret leaves no fragment of 8 characters."""

from __future__ import annotations

import html
import json
from urllib.parse import quote, quote_plus

import pytest
from hypothesis import given
from hypothesis import strategies as st

from app.sanitization import REDACTED, clean_remote_text, redact, scrubbing

SECRET = 'k3y/9f+Qa"\\<&>=Zx81-pl'
FORMS = {
    "raw": SECRET,
    "json": json.dumps(SECRET)[1:-1],
    "json-slash": json.dumps(SECRET)[1:-1].replace("/", "\\/"),
    "percent": quote(SECRET, safe=""),
    "percent-lower": quote(SECRET, safe="").lower(),
    "form": quote_plus(SECRET),
    "html": html.escape(SECRET),
}


def fragments(text: str, size: int = 8) -> set[str]:
    return {text[i : i + size] for i in range(len(text) - size + 1)}


def leaked(output: str) -> list[str]:
    return [f for form in FORMS.values() for f in fragments(form) if f in output]


@pytest.mark.parametrize("limit", [100, 200, 300, 500])
@pytest.mark.parametrize("form", FORMS)
def test_an_echo_cut_at_any_offset_around_the_limit_leaves_no_fragment(form: str, limit: int) -> None:
    echoed = FORMS[form]
    for offset in range(limit - len(echoed) - 2, limit + 2):
        text = "x" * offset + echoed + " and more"
        with scrubbing([SECRET]):
            cleaned = clean_remote_text(text, limit)
        assert not leaked(cleaned), (form, offset, cleaned)
        assert len(cleaned) <= limit


def test_a_secret_the_remote_side_cut_off_is_still_scrubbed() -> None:
    assert redact(f"password was {SECRET[:12]}...", [SECRET]) == f"password was {REDACTED}..."
    assert redact(f"password was {SECRET[:5]}…", [SECRET]) == f"password was {REDACTED}…"


def test_text_that_merely_resembles_part_of_a_secret_stays() -> None:
    message = "password authentication failed for user app"
    assert redact(message, ["wrong-password", "user app!"]) == message


def test_without_secrets_in_scope_text_is_only_cleaned() -> None:
    assert clean_remote_text(f"a\nb {SECRET}") == f"a b {SECRET}"


def test_terminal_escapes_and_bidirectional_overrides_are_dropped() -> None:
    hostile = "ok\x1b[2J \x9b31m red \u202egnp.exe\u202c \u2066isolated\u2069 \u200fmark caf\u00e9 \u4e2d"
    assert clean_remote_text(hostile) == "ok [2J  31m red  gnp.exe   isolated   mark caf\u00e9 \u4e2d"


def test_url_passwords_are_redacted() -> None:
    assert redact("see https://user:hunter2@example.test/x", []) == "see https://***@example.test/x"
    assert redact("xhttps://u:p@h and s3+tls://k:v@bucket", []) == "xhttps://***@h and s3+tls://***@bucket"


@pytest.mark.timeout(20)  # a scrub that retried the scheme at every letter took minutes for one hostile megabyte
@pytest.mark.parametrize("text", ["X" * 1_000_000, "a://b:" * 170_000, "http://u:" + "p" * 1_000_000])
def test_scrubbing_a_hostile_megabyte_is_linear(text: str) -> None:
    assert len(clean_remote_text(text, 1_000_000)) <= 1_000_000


@given(st.text(min_size=8, max_size=40), st.text(max_size=300), st.integers(20, 400))
def test_any_secret_in_any_form_never_survives_a_cut(secret: str, padding: str, limit: int) -> None:
    forms = [secret, json.dumps(secret)[1:-1], quote(secret, safe=""), html.escape(secret)]
    for form in forms:
        with scrubbing([secret]):
            cleaned = clean_remote_text(padding + form, limit)
        assert secret not in cleaned or secret in clean_remote_text(padding, 10**6)

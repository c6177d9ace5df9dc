"""Shared by the tests of the kinds: reading a targets file as the config does."""

from __future__ import annotations

import pytest

from app.checks.base import Target
from app.config import ConfigError, parse_targets

# what `${NAME}` references in the tests' targets files resolve to
ENVIRON = {
    "PG_PASSWORD": "s3cret",
    "CASSANDRA_PASSWORD": "s3cret",
    "STORAGE_KEY": "S2V5S2V5",
    "AI_KEY": "secret-key-value-0123456789",
}


def parse(text: str) -> list[Target]:
    """The targets of a targets file's text."""
    return parse_targets(text, "targets.yaml", ENVIRON)


def config_error(text: str) -> str:
    """The message a targets file's text is refused with."""
    with pytest.raises(ConfigError) as caught:
        parse(text)
    return str(caught.value)

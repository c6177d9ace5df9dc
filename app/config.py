"""Settings from the environment, and the targets file: `${ENV}` references resolved, every field validated."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, get_args

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.checks import AnyTarget
from app.checks.base import Target


def _kind_names() -> frozenset[str]:
    union = get_args(AnyTarget)[0]
    members = get_args(union) or (union,)
    return frozenset(get_args(member.model_fields["kind"].annotation)[0] for member in members)


KINDS = _kind_names()
_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_CONFIG_BYTES = 1_000_000


class ConfigError(Exception):
    """The config cannot be used; the message names the place (`targets[2].port: ...`)."""


class TargetsFile(BaseModel):
    model_config = ConfigDict(extra="forbid")

    targets: list[AnyTarget] = Field(default_factory=list)

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[Target]) -> list[Target]:
        seen: set[str] = set()
        for target in targets:
            if target.name in seen:
                raise ValueError(f"target name '{target.name}' is used twice; names must be unique")
            seen.add(target.name)
        return targets


def load_targets(path: str | Path, environ: dict[str, str] | None = None) -> list[Target]:
    """Read, resolve and validate a targets file. Raises ConfigError with a precise message."""
    path = Path(path)
    try:
        if path.stat().st_size > MAX_CONFIG_BYTES:
            raise ConfigError(f"{path}: larger than {MAX_CONFIG_BYTES} bytes; is this the right file?")
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: no such file") from None
    except (OSError, UnicodeDecodeError) as error:
        raise ConfigError(f"{path}: cannot read it ({type(error).__name__})") from None
    return parse_targets(text, str(path), os.environ if environ is None else environ)


def parse_targets(text: str, source: str, environ: dict[str, str] | os._Environ[str]) -> list[Target]:
    try:
        document = yaml.safe_load(text)
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        raise ConfigError(f"{source}: not valid YAML{where}") from None
    if document is None:
        document = {}
    if not isinstance(document, dict):
        raise ConfigError(f"{source}: expected a mapping with a 'targets' list at the top")
    document = _resolve_env(document, (), environ)
    try:
        return list(TargetsFile.model_validate(document).targets)
    except ValidationError as error:
        raise ConfigError("\n".join(_describe(e) for e in error.errors())) from None


def _resolve_env(value: Any, path: tuple[str | int, ...], environ: Any) -> Any:
    """Replace `${NAME}` in every string; an unset variable is an error, never an empty secret."""
    if isinstance(value, dict):
        return {key: _resolve_env(item, (*path, key), environ) for key, item in value.items()}
    if isinstance(value, list):
        return [_resolve_env(item, (*path, index), environ) for index, item in enumerate(value)]
    if isinstance(value, str):

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name not in environ:
                raise ConfigError(f"{_location(path)}: environment variable {name} is not set")
            return str(environ[name])

        return _ENV_REFERENCE.sub(substitute, value)
    return value


def _location(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(error: Any) -> str:
    """One line per problem, naming the field as a user wrote it: `targets[2].port: must be 1-65535`."""
    loc: list[str | int] = []
    for part in error["loc"]:
        # pydantic inserts the discriminator value (e.g. 'tcp') into the path of a union member; users never wrote it
        if part in KINDS and len(loc) == 2 and loc[0] == "targets" and isinstance(loc[1], int):
            continue
        loc.append(part)
    kind = error["type"]
    ctx = error.get("ctx") or {}
    if kind == "extra_forbidden":
        message = "unknown key (check its spelling)"
    elif kind == "missing":
        message = "required"
    elif kind == "union_tag_invalid":
        message = f"unknown kind {ctx.get('tag')!r}; expected one of {ctx.get('expected_tags')}"
    elif kind == "union_tag_not_found":
        message = "missing 'kind'"
    elif kind in {"greater_than_equal", "less_than_equal"} and loc and loc[-1] == "port":
        message = "must be 1-65535"
    else:
        message = error["msg"]
        message = message.removeprefix("Value error, ")
    return f"{_location(tuple(loc))}: {message}"

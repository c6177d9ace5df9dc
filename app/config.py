"""Settings from the environment, and the targets file: `${ENV}` references resolved, every field validated."""

from __future__ import annotations

import functools
import os
import re
from pathlib import Path
from typing import Annotated, Any

import yaml
from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    SecretStr,
    StringConstraints,
    ValidationError,
    create_model,
    field_validator,
    model_validator,
)
from pydantic_settings import BaseSettings, PydanticBaseSettingsSource, SecretsSettingsSource, SettingsConfigDict

from app import checks
from app.checks.base import Port, Target

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_CONFIG_BYTES = 1_000_000


class ConfigError(Exception):
    """The config cannot be used; the message names the place (`targets[2].port: ...`)."""


class TargetsFile(BaseModel):
    """The targets file; `targets_file()` narrows `targets` to the registered kinds."""

    model_config = ConfigDict(extra="forbid")

    targets: list[Target] = Field(default_factory=list)

    @field_validator("targets")
    @classmethod
    def _unique_names(cls, targets: list[Target]) -> list[Target]:
        seen: set[str] = set()
        for target in targets:
            if target.name in seen:
                raise ValueError(f"target name '{target.name}' is used twice; names must be unique")
            seen.add(target.name)
        return targets


def targets_file() -> type[TargetsFile]:
    """TargetsFile over the kinds registered in app.checks now (a test may register one more)."""
    return _targets_file(checks.KINDS)


@functools.cache
def _targets_file(kinds: tuple[type[Target], ...]) -> type[TargetsFile]:
    targets: Any = (list[checks.any_target(kinds)], Field(default_factory=list))  # type: ignore[misc]
    return create_model("TargetsFile", __base__=TargetsFile, targets=targets)


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
        return list(targets_file().model_validate(document).targets)
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
    kinds = checks.kind_models()
    for part in error["loc"]:
        # pydantic inserts the discriminator value (e.g. 'tcp') into the path of a union member; users never wrote it
        if part in kinds and len(loc) == 2 and loc[0] == "targets" and isinstance(loc[1], int):
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


# --- Server settings -------------------------------------------------------------------------------------------

DEFAULT_SECRETS_DIR = Path("/etc/airia-test-pod/secrets")
MIN_PASSWORD_LENGTH = 12
MIN_SECRET_KEY_LENGTH = 32
# Passwords long enough to pass the length rule that still appear first in every guessing list.
_WELL_KNOWN_PASSWORDS = frozenset(
    {
        "password1234",
        "password123!",
        "passw0rd1234",
        "123456789012",
        "1234567890ab",
        "qwertyuiop12",
        "qwerty123456",
        "adminadmin12",
        "admin1234567",
        "administrator",
        "changeme1234",
        "welcome12345",
        "letmein12345",
        "iloveyou1234",
        "airia-test-pod",
        "airiatestpod",
        "correcthorsebatterystaple",
    }
)
# Placeholder phrases copied from templates and tutorials: a key containing one was never generated.
_PLACEHOLDER_KEY_WORDS = ("changeme", "change-me", "change_me", "changethis", "your-secret", "secret-key", "example")


class Settings(BaseSettings):
    """The server's settings: `TESTPOD_*` variables, then files named like the field in TESTPOD_SECRETS_DIR.

    A missing password or secret key is generated at start-up (see app.auth); a weak one given explicitly is
    refused unless dev mode is on, because a weak secret that someone chose is a secret someone can guess.
    """

    model_config = SettingsConfigDict(env_prefix="TESTPOD_", env_ignore_empty=True, extra="ignore")

    config: Path | None = None
    host: str = "0.0.0.0"  # noqa: S104 - a pod serves its Service from every interface
    port: Port = Field(8080, validation_alias=AliasChoices("port", "PORT"))
    auth_username: Annotated[str, StringConstraints(min_length=1, max_length=64, pattern=r"^\S+$")] = "admin"
    auth_password: SecretStr | None = None
    auth_password_hash: SecretStr | None = None
    secret_key: SecretStr | None = None
    session_minutes: Annotated[int, Field(ge=1, le=7 * 24 * 60)] = 8 * 60
    dev_mode: bool = False
    forwarded_allow_ips: str = ""  # proxies whose X-Forwarded-* headers are believed; empty: none
    cookie_secure: bool = False  # Secure cookies even over http: the pod sits behind a TLS-terminating ingress
    run_on_start: bool = True
    strict: bool = False

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Kubernetes mounts a Secret as one file per key; the keys are the field names, without the prefix.
        directory = Path(os.environ.get("TESTPOD_SECRETS_DIR") or DEFAULT_SECRETS_DIR)
        if not directory.is_dir():
            return init_settings, env_settings
        return init_settings, env_settings, SecretsSettingsSource(settings_cls, secrets_dir=directory, env_prefix="")

    @model_validator(mode="after")
    def _refuse_weak_secrets(self) -> Settings:
        if self.auth_password is not None and self.auth_password_hash is not None:
            raise ValueError("set TESTPOD_AUTH_PASSWORD or TESTPOD_AUTH_PASSWORD_HASH, not both")
        if self.auth_password_hash is not None:
            _check_password_hash(self.auth_password_hash.get_secret_value())
        if self.dev_mode:
            return self
        if self.auth_password is not None:
            _check_password(self.auth_password.get_secret_value(), self.auth_username)
        if self.secret_key is not None:
            _check_secret_key(self.secret_key.get_secret_value())
        return self


def _check_password(password: str, username: str) -> None:
    dev_hint = "(or set TESTPOD_DEV_MODE=true on a workstation)"
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"TESTPOD_AUTH_PASSWORD is shorter than {MIN_PASSWORD_LENGTH} characters {dev_hint}")
    lowered = password.lower()
    if lowered in _WELL_KNOWN_PASSWORDS or lowered == username.lower() or len(set(lowered)) <= 2:
        raise ValueError(f"TESTPOD_AUTH_PASSWORD is a well-known or trivial password; choose another {dev_hint}")


def _check_secret_key(key: str) -> None:
    advice = "generate one with: python -c 'import secrets; print(secrets.token_urlsafe(48))'"
    if len(key) < MIN_SECRET_KEY_LENGTH:
        raise ValueError(f"TESTPOD_SECRET_KEY is shorter than {MIN_SECRET_KEY_LENGTH} characters; {advice}")
    if len(set(key)) < 10 or any(word in key.lower() for word in _PLACEHOLDER_KEY_WORDS):
        raise ValueError(f"TESTPOD_SECRET_KEY looks like a placeholder, not a random key; {advice}")


def _check_password_hash(value: str) -> None:
    from argon2 import extract_parameters
    from argon2.exceptions import InvalidHashError

    try:
        extract_parameters(value)
    except (InvalidHashError, ValueError):
        raise ValueError(
            "TESTPOD_AUTH_PASSWORD_HASH is not an argon2 hash; make one with: python -m app hash-password"
        ) from None


def describe_settings_error(error: ValidationError) -> str:
    """One line per problem, naming the variable; pydantic's own text would echo the rejected (secret) value."""
    lines = []
    for problem in error.errors(include_input=False, include_url=False):
        field = ".".join(str(part) for part in problem["loc"])
        variable = "PORT" if field.lower() == "port" else f"TESTPOD_{field.upper()}"
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"{variable}: {message}" if field else message)
    return "\n".join(lines)

"""Settings from the environment, and the targets file: `${ENV}` references resolved, every field validated."""

from __future__ import annotations

import functools
import math
import os
import re
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Annotated, Any, cast

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
from yaml.composer import Composer

from app import checks
from app.checks.base import Port, Target
from app.runner import DEFAULT_CONCURRENCY

_ENV_REFERENCE = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")
MAX_CONFIG_BYTES = 256 * 1024  # a thousand targets fit in a quarter of it; parsing it all takes ~0.3 s
MAX_TARGETS = 2000
MAX_DEPTH = 32  # a targets file is 4 levels deep (targets, a target, headers, a header)
MAX_NODES = 200_000  # values once every alias is expanded
MAX_SCALAR = 64 * 1024
MAX_INT_DIGITS = 32


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


def parse_targets(text: str, source: str, environ: Mapping[str, str]) -> list[Target]:
    """Parse, resolve and validate a targets document; every problem is a ConfigError naming its place."""
    if len(text) > MAX_CONFIG_BYTES:
        raise ConfigError(f"{source}: larger than {MAX_CONFIG_BYTES} bytes; is this the right file?")
    root = _compose(text, source)
    if root is None:
        return []
    if not isinstance(root, yaml.MappingNode):
        raise ConfigError(f"{source}: expected a mapping with a 'targets' list at the top")
    for key, value in root.value:  # counted before anything is built from them
        if getattr(key, "value", None) == "targets" and isinstance(value, yaml.SequenceNode):
            count = len(value.value)
            if count > MAX_TARGETS:
                raise ConfigError(f"targets: {count} targets; at most {MAX_TARGETS} are checked by one pod")
    _measure(root, source)
    document = _construct(root, source)
    document = _resolve_env(document, (), environ)
    try:
        return list(targets_file().model_validate(document).targets)
    except ValidationError as error:
        raise ConfigError("\n".join(_describe(e, root) for e in error.errors())) from None


# --- Bounded YAML --------------------------------------------------------------------------------------------
# yaml.safe_load is safe from code execution but not from work: aliases expand into trees of any size, nesting
# recurses once per level and an integer of 10^5 digits fails deep in Python. The loader below bounds all three
# on the composed nodes, before anything is built from them, and names the line of whatever it refuses.

_BaseLoader: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)  # libyaml parses 5x faster
_INT_TAG = "tag:yaml.org,2002:int"
_MERGE_TAG = "tag:yaml.org,2002:merge"


class _BoundedLoader(_BaseLoader):  # type: ignore[valid-type,misc]
    """libyaml's parser with PyYAML's own composer, so nesting can be counted before it recurses."""

    def __init__(self, stream: str) -> None:
        super().__init__(stream)
        self.anchors: dict[str, yaml.Node] = {}
        self.depth = 0

    get_single_node = Composer.get_single_node
    compose_document = Composer.compose_document
    compose_scalar_node = Composer.compose_scalar_node
    compose_sequence_node = Composer.compose_sequence_node
    compose_mapping_node = Composer.compose_mapping_node

    def compose_node(self, parent: yaml.Node | None, index: int) -> yaml.Node | None:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            mark = self.peek_event().start_mark
            raise _Refused(f"nested more than {MAX_DEPTH} levels deep", mark)
        try:
            return Composer.compose_node(self, parent, index)
        finally:
            self.depth -= 1


class _Refused(Exception):
    def __init__(self, message: str, mark: yaml.Mark | None) -> None:
        super().__init__(message)
        self.message, self.mark = message, mark


def _at(mark: yaml.Mark | None) -> str:
    return f" at line {mark.line + 1}, column {mark.column + 1}" if mark is not None else ""


def _compose(text: str, source: str) -> yaml.Node | None:
    loader = _BoundedLoader(text)
    try:
        return loader.get_single_node()
    except _Refused as refused:
        raise ConfigError(f"{source}: {refused.message}{_at(refused.mark)}") from None
    except yaml.YAMLError as error:
        raise ConfigError(f"{source}: not valid YAML{_at(getattr(error, 'problem_mark', None))}") from None
    finally:
        loader.dispose()


def _measure(root: yaml.Node, source: str) -> None:
    """Refuse what would cost too much to build: too many values once aliases expand, nesting too deep, a value
    too long, an integer too long to convert, a key given twice. Each aliased node is measured once."""
    measured: dict[int, tuple[int, int]] = {}  # id(node) -> (values, levels) of its expanded tree

    def too_deep(node: yaml.Node) -> ConfigError:
        return ConfigError(f"{source}: nested more than {MAX_DEPTH} levels deep{_at(node.start_mark)}")

    def measure(node: yaml.Node, depth: int) -> tuple[int, int]:
        if depth > MAX_DEPTH:  # also ends a recursive alias (`&a [*a]`), whose expansion never ends
            raise too_deep(node)
        known = measured.get(id(node))
        if known is not None:
            if depth + known[1] > MAX_DEPTH:
                raise too_deep(node)
            return known
        children: list[yaml.Node] = []
        if isinstance(node, yaml.ScalarNode):
            if len(node.value) > MAX_SCALAR:
                raise ConfigError(f"{source}: a value longer than {MAX_SCALAR} characters{_at(node.start_mark)}")
            if node.tag == _INT_TAG and len(node.value) > MAX_INT_DIGITS:
                raise ConfigError(f"{source}: an integer longer than {MAX_INT_DIGITS} digits{_at(node.start_mark)}")
        elif isinstance(node, yaml.SequenceNode):
            children = node.value
        elif isinstance(node, yaml.MappingNode):
            seen: set[tuple[str, str]] = set()
            for key, value in node.value:
                if isinstance(key, yaml.ScalarNode) and key.tag != _MERGE_TAG:
                    if (key.tag, key.value) in seen:
                        raise ConfigError(f"{source}: key {key.value[:64]!r} is given twice{_at(key.start_mark)}")
                    seen.add((key.tag, key.value))
                children += (key, value)
        sizes = [measure(child, depth + 1) for child in children]
        size, levels = 1 + sum(s for s, _ in sizes), 1 + max((levels for _, levels in sizes), default=0)
        if size > MAX_NODES:
            raise ConfigError(
                f"{source}: expands to more than {MAX_NODES} values (anchors and aliases?){_at(node.start_mark)}"
            )
        measured[id(node)] = (size, levels)
        return size, levels

    measure(root, 0)


def _construct(root: yaml.Node, source: str) -> dict[str, Any]:
    loader = _BoundedLoader("")
    try:
        document = loader.construct_document(root)
    except yaml.YAMLError as error:  # a bad merge key, an unknown tag
        raise ConfigError(f"{source}: not valid YAML{_at(getattr(error, 'problem_mark', None))}") from None
    except (ValueError, OverflowError) as error:  # a timestamp or number that does not exist
        raise ConfigError(f"{source}: a value cannot be read ({type(error).__name__})") from None
    finally:
        loader.dispose()
    return cast(dict[str, Any], document)


def _resolve_env(value: Any, path: tuple[str | int, ...], environ: Mapping[str, str]) -> Any:
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


def _line_of(root: yaml.Node, loc: Sequence[str | int]) -> int | None:
    """The line where the value at `loc` (a validation error's path) was written, when it was written."""
    node = root
    for part in loc:
        if isinstance(node, yaml.SequenceNode) and isinstance(part, int) and 0 <= part < len(node.value):
            node = node.value[part]
        elif isinstance(node, yaml.MappingNode):
            matches = [value for key, value in node.value if getattr(key, "value", None) == str(part)]
            if not matches:
                break
            node = matches[-1]
        else:
            break
    return node.start_mark.line + 1 if node is not root else None


def _location(path: tuple[str | int, ...]) -> str:
    text = ""
    for part in path:
        text += f"[{part}]" if isinstance(part, int) else (f".{part}" if text else str(part))
    return text or "(top level)"


def _describe(error: Any, root: yaml.Node) -> str:
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
    line = _line_of(root, error["loc"])
    return f"{_location(tuple(loc))}: {message}" + (f" (line {line})" if line is not None else "")


# --- Server settings -------------------------------------------------------------------------------------------

DEFAULT_SECRETS_DIR = Path("/etc/airia-test-pod/secrets")
MIN_PASSWORD_LENGTH = 12
MIN_SECRET_KEY_LENGTH = 32
MIN_SECRET_KEY_BITS = 100  # 32 random hex digits estimate at ~150; `0123456789abcdef` twice at 21
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
    max_concurrent_checks: Annotated[int, Field(ge=1, le=1000)] = DEFAULT_CONCURRENCY

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
    if any(word in key.lower() for word in _PLACEHOLDER_KEY_WORDS):
        raise ValueError(f"TESTPOD_SECRET_KEY looks like a placeholder, not a random key; {advice}")
    if estimated_entropy_bits(key) < MIN_SECRET_KEY_BITS:
        raise ValueError(f"TESTPOD_SECRET_KEY looks like a placeholder, not a random key (too predictable); {advice}")


def estimated_entropy_bits(key: str) -> float:
    """A cautious estimate of a key's randomness: only the part that does not repeat counts, and within it only
    the characters a constant step from the two before does not predict (`0123…`, `aaaa`, `2468`), each worth
    the size of the character classes the key draws from."""
    period = next(p for p in range(1, len(key) + 1) if all(key[i] == key[i % p] for i in range(len(key))))
    core = key[:period]
    surprising = sum(
        1 for i in range(len(core)) if i < 2 or ord(core[i]) - ord(core[i - 1]) != ord(core[i - 1]) - ord(core[i - 2])
    )
    classes = (
        (str.isdigit, 10),
        (str.islower, 26),
        (str.isupper, 26),
        (lambda c: not c.isalnum(), 33),
    )
    alphabet = sum(size for test, size in classes if any(test(c) for c in core))
    return surprising * math.log2(max(alphabet, 2))


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

"""What every check shares: the target base model, stages, the failure a check raises, the probe it reports to,
and finding an error's cause in a library's chain of wrapper exceptions."""

from __future__ import annotations

import time
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum
from typing import Annotated, ClassVar, TypeVar, get_args
from urllib.parse import parse_qsl, urlsplit

from pydantic import AfterValidator, BaseModel, ConfigDict, Field, SecretStr, StringConstraints

Scalar = str | int | float | bool | None
CLEAN_UP_GRACE = 2.0  # seconds the removal of a scratch object may take even when the deadline has passed


class Stage(StrEnum):
    """Where a check stopped, in the order a connection gets there."""

    RESOLVE = "resolve"
    CONNECT = "connect"
    TLS = "tls"
    AUTH = "auth"
    PERMISSION = "permission"
    OPERATION = "operation"


class Status(StrEnum):
    PASSED = "passed"
    WARNING = "warning"
    FAILED = "failed"


class CheckFailed(Exception):
    """Raised by a check to stop at `stage`, saying why in one line and what to do about it."""

    def __init__(self, stage: Stage, cause: str, remediation: str) -> None:
        super().__init__(cause)
        self.stage = stage
        self.cause = cause
        self.remediation = remediation


Port = Annotated[int, Field(ge=1, le=65535)]
Host = Annotated[str, StringConstraints(min_length=1, max_length=253, pattern=r"^[^\s/]+$")]

MIN_QUERY_SECRET = 6  # shorter query values (`v=1`, `page=2`) are parameters, and scrubbing them would garble text


class _QuerySecrets:
    """Marks a URL field whose query-string values are secrets (`?access_token=…`, `?sig=…`): see Target.secrets."""


def _no_userinfo(url: str) -> str:
    try:
        parts = urlsplit(url)
    except ValueError as error:
        raise ValueError(f"is not a valid URL ({error})") from None
    if "@" in parts.netloc:
        raise ValueError("must not contain credentials (user:password@); give them in the kind's secret fields")
    return url


def _has_query_secrets(annotation: object, metadata: Sequence[object] = ()) -> bool:
    """Whether a field's type is a ConfiguredUrl, also inside `| None` (where pydantic keeps the metadata)."""
    if any(isinstance(m, _QuerySecrets) for m in (*metadata, *getattr(annotation, "__metadata__", ()))):
        return True
    return any(_has_query_secrets(arg) for arg in get_args(annotation))


# Every URL field of every kind: no userinfo, and its query values are scrubbed from every output like a password.
ConfiguredUrl = Annotated[str, AfterValidator(_no_userinfo), _QuerySecrets()]


def _sendable(value: SecretStr) -> SecretStr:
    if any(not (" " <= c <= "~" or c == "\t") for c in value.get_secret_value()):
        raise ValueError("may hold only printable ASCII characters: an HTTP header cannot carry anything else")
    return value


# A secret sent as an HTTP header value (an API key, a header of the http kind).
HeaderSecret = Annotated[SecretStr, AfterValidator(_sendable)]

TargetName = Annotated[
    str,
    StringConstraints(min_length=1, max_length=63, pattern=r"^[a-z0-9]([a-z0-9-]*[a-z0-9])?$"),
]


class Target(BaseModel, ABC):
    """One configured thing to check. Each kind subclasses it with its own fields and a `check` method."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    default_timeout: ClassVar[float] = 10.0
    # modules the check imports lazily (heavy SDKs), or `module:function` to call: done before the server listens
    warm_imports: ClassVar[tuple[str, ...]] = ()

    name: TargetName
    kind: str
    required: bool = True
    timeout: Annotated[float, Field(gt=0, le=600)] | None = None
    description: Annotated[str, Field(max_length=500)] = ""

    @property
    def effective_timeout(self) -> float:
        return self.timeout if self.timeout is not None else self.default_timeout

    def secrets(self) -> list[str]:
        """Every secret value this target holds, so outputs can be scrubbed of them."""
        found = []
        for name, info in type(self).model_fields.items():
            value = getattr(self, name)
            if isinstance(value, SecretStr) and value.get_secret_value():
                found.append(value.get_secret_value())
            elif isinstance(value, str) and _has_query_secrets(info.annotation, info.metadata):
                query = parse_qsl(urlsplit(value).query, keep_blank_values=True)
                found += [item for _, item in query if len(item) >= MIN_QUERY_SECRET]
        return found

    @abstractmethod
    def check(self, probe: Probe) -> None:
        """Take the steps, record facts on the probe, raise CheckFailed at the first thing that is wrong."""


class Step(BaseModel):
    """One stage-tagged action of a check, as the probe records it and every result shows it."""

    model_config = ConfigDict(frozen=True)

    name: str
    stage: Stage
    status: Status
    duration_ms: float
    detail: str = ""


def elapsed_ms(started: float) -> float:
    """Milliseconds since `started` (a time.perf_counter() reading), as every duration and latency is given."""
    return round((time.perf_counter() - started) * 1000, 2)


E = TypeVar("E", bound=BaseException)


def find_cause(error: BaseException, kind: type[E], accept: Callable[[E], bool] = lambda _: True) -> E | None:
    """The first `kind` (that `accept`s) in the chain behind a library's wrapper exception, the error itself first.

    Follows __cause__, __context__ and azure-core's inner_exception.
    """
    seen: set[int] = set()
    current: BaseException | None = error
    while current is not None and id(current) not in seen:
        if isinstance(current, kind) and accept(current):
            return current
        seen.add(id(current))
        current = current.__cause__ or current.__context__ or getattr(current, "inner_exception", None)
    return None


@dataclass
class Probe:
    """A check's notebook: the steps it took, the facts it learned, the stage it is in.

    The runner reads `stage` and `step` when a check overruns its timeout, to say where it hung.
    """

    deadline: float
    stage: Stage = Stage.RESOLVE
    step_name: str = ""
    step_started: float = 0.0
    step_detail: str = ""
    steps: list[Step] = field(default_factory=list)
    facts: dict[str, Scalar] = field(default_factory=dict)
    warnings: list[tuple[Stage, str, str]] = field(default_factory=list)
    started_at: datetime = field(default_factory=lambda: datetime.now().astimezone())

    def remaining(self, floor: float = 0.05) -> float:
        """Seconds left before the runner gives up; SDK timeouts are set from it so threads end soon after."""
        return max(self.deadline - time.monotonic(), floor)

    @contextmanager
    def step(self, name: str, stage: Stage) -> Iterator[None]:
        start = time.perf_counter()
        self.stage, self.step_name, self.step_started, self.step_detail = stage, name, start, ""
        try:
            yield
        except CheckFailed as failure:
            self._record(name, stage, Status.FAILED, start, failure.cause)
            raise
        except BaseException as error:
            self._record(name, stage, Status.FAILED, start, type(error).__name__)
            raise
        self._record(name, stage, Status.PASSED, start, self.step_detail)

    @contextmanager
    def timed(self, fact: str) -> Iterator[None]:
        """Record how long the block took, in milliseconds, as the fact `fact` (only when it completes)."""
        started = time.perf_counter()
        yield
        self.facts[fact] = elapsed_ms(started)

    def throughput(self, direction: str, size: int, started: float) -> None:
        """Record an upload's or a download's duration and MiB/s as facts, and note them on the step."""
        seconds = max(time.perf_counter() - started, 1e-6)
        mib_per_s = round(size / (1024 * 1024) / seconds, 2)
        self.facts[f"{direction}_ms"] = round(seconds * 1000, 2)
        self.facts[f"{direction}_mib_s"] = mib_per_s
        self.note(f"{size // 1024} KiB in {seconds * 1000:.1f} ms, {mib_per_s} MiB/s")

    def note(self, detail: str) -> None:
        """Attach a detail to the step in progress (e.g. 'TLSv1.3', '127.0.0.1, ::1')."""
        self.step_detail = detail

    def warn(self, stage: Stage, cause: str, remediation: str) -> None:
        """The target works, but something will hurt later (expiring certificate, low replication ...)."""
        self.warnings.append((stage, cause, remediation))

    def hung_step(self, cause: str) -> Step:
        """The step in progress when the runner gave up on it: it never finished, so it never recorded itself."""
        elapsed = elapsed_ms(self.step_started) if self.step_started else 0.0
        return Step(
            name=self.step_name or self.stage.value,
            stage=self.stage,
            status=Status.FAILED,
            duration_ms=elapsed,
            detail=cause,
        )

    def _record(self, name: str, stage: Stage, status: Status, start: float, detail: str) -> None:
        self.steps.append(Step(name=name, stage=stage, status=status, duration_ms=elapsed_ms(start), detail=detail))

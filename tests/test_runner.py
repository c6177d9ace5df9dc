"""The runner: timeouts at the stage reached, concurrency, single flight, verdicts and redaction.

Most targets here are real tcp checks against local sockets; `Scripted` is a check whose behaviour the test
controls, to pin down the runner's own rules (a hang at a given stage, an unexpected error, a warning).
"""

from __future__ import annotations

import asyncio
import gc
import threading
import time
from typing import Literal

import pytest
from pydantic import SecretStr

from app.checks.base import CheckFailed, Probe, Stage, Status, Target
from app.checks.tcp import TcpTarget
from app.results import Verdict
from app.runner import Runner, check_target, run_targets
from tests.servers import StallServer


class Scripted(Target):
    kind: Literal["scripted"] = "scripted"
    behaviour: str = "pass"
    password: SecretStr = SecretStr("")

    def check(self, probe: Probe) -> None:
        with probe.step("connect", Stage.CONNECT):
            probe.facts["secret_echo"] = f"token={self.password.get_secret_value()}"
        with probe.step("login", Stage.AUTH):
            if self.behaviour == "hang-then-fail":
                threading.Event().wait(probe.remaining() + 0.3)
                raise RuntimeError(f"too late, with {self.password.get_secret_value()}")
            if self.behaviour == "hang":
                threading.Event().wait(probe.remaining() + 1)  # overruns its deadline
            elif self.behaviour == "fail":
                raise CheckFailed(Stage.AUTH, f"rejected {self.password.get_secret_value()}", "fix the password")
            elif self.behaviour == "raise-timeout":
                raise TimeoutError("the library gave up")
            elif self.behaviour == "crash":
                raise ValueError(f"library blew up with {self.password.get_secret_value()}")
        if self.behaviour == "warn":
            probe.warn(Stage.OPERATION, "slow", "look at the load")


def tcp(name: str, port: int, *, required: bool = True, timeout: float | None = None) -> TcpTarget:
    return TcpTarget(name=name, kind="tcp", host="127.0.0.1", port=port, required=required, timeout=timeout)


async def test_real_tcp_pass_and_fail(stall: StallServer, closed_port: int) -> None:
    run = await run_targets([tcp("open", stall.port), tcp("closed", closed_port)])
    opened, closed = run.results
    assert opened.status == Status.PASSED and opened.stage is None
    assert [s.name for s in opened.steps] == ["resolve", "connect"]
    assert opened.facts["connected_to"] == f"127.0.0.1:{stall.port}"
    assert closed.status == Status.FAILED and closed.stage == Stage.CONNECT
    assert "Connection refused" in closed.cause and "nothing listens" in closed.remediation
    assert run.verdict == Verdict.NOT_READY
    assert run.counts.model_dump() == {"total": 2, "passed": 1, "warning": 0, "failed": 1, "pending": 0}


async def test_hung_check_fails_on_time_at_the_stage_it_reached() -> None:
    start = time.monotonic()
    result = await check_target(Scripted(name="hangs", behaviour="hang", timeout=0.3))
    assert time.monotonic() - start < 1.0
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause == "login did not finish within 0.3 s"
    assert result.steps[-1].name == "login" and result.steps[-1].status == Status.FAILED
    assert result.steps[-1].duration_ms >= 250


async def test_an_error_after_the_deadline_is_never_printed(caplog: pytest.LogCaptureFixture) -> None:
    secret = "late-Planted-Secret-77"
    target = Scripted(name="late", behaviour="hang-then-fail", password=SecretStr(secret), timeout=0.2)
    result = await check_target(target)
    assert result.status == Status.FAILED
    await asyncio.sleep(0.6)  # the thread raises after the deadline; the loop runs its callbacks
    gc.collect()  # asyncio reports an unretrieved exception when its future is collected
    await asyncio.sleep(0)
    assert "never retrieved" not in caplog.text
    assert secret not in caplog.text


async def test_hung_checks_do_not_delay_each_other() -> None:
    targets = [Scripted(name=f"hang-{i}", behaviour="hang", timeout=0.5) for i in range(30)]
    start = time.monotonic()
    run = await run_targets(targets)
    # 30 sequential hangs would take 15 s; concurrently they take about one timeout
    assert time.monotonic() - start < 3.0
    assert {r.status for r in run.results} == {Status.FAILED}


async def test_failure_keeps_the_checks_own_classification() -> None:
    result = await check_target(Scripted(name="bad", behaviour="fail", password=SecretStr("pw-1234567")))
    assert (result.status, result.stage, result.remediation) == (Status.FAILED, Stage.AUTH, "fix the password")


async def test_a_timeout_error_raised_by_the_check_is_not_the_runners_timeout() -> None:
    result = await check_target(Scripted(name="own-timeout", behaviour="raise-timeout", timeout=5))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause.startswith("TimeoutError: the library gave up")
    assert result.duration_ms < 1000


async def test_unexpected_error_is_reported_not_raised() -> None:
    result = await check_target(Scripted(name="boom", behaviour="crash"))
    assert (result.status, result.stage) == (Status.FAILED, Stage.AUTH)
    assert result.cause.startswith("ValueError: library blew up")


@pytest.mark.parametrize("behaviour", ["fail", "crash", "hang"])
async def test_secrets_never_reach_the_result(behaviour: str) -> None:
    secret = "s3cr3t-Planted-Value-91"
    target = Scripted(name="leaky", behaviour=behaviour, password=SecretStr(secret), timeout=0.2)
    result = await check_target(target)
    assert secret not in result.model_dump_json()
    assert result.facts["secret_echo"] == "token=***"


async def test_warning_is_ready_unless_strict() -> None:
    targets = [Scripted(name="slow", behaviour="warn")]
    relaxed, strict = await run_targets(targets), await run_targets(targets, strict=True)
    assert relaxed.results[0].status == Status.WARNING
    assert (relaxed.results[0].stage, relaxed.results[0].cause) == (Stage.OPERATION, "slow")
    assert (relaxed.verdict, strict.verdict) == (Verdict.READY, Verdict.NOT_READY)


async def test_optional_failure_keeps_the_run_ready(closed_port: int) -> None:
    run = await run_targets([tcp("extra", closed_port, required=False)])
    assert run.results[0].status == Status.FAILED
    assert run.verdict == Verdict.READY


async def test_concurrent_callers_share_one_run() -> None:
    runner = Runner([Scripted(name="a", behaviour="hang", timeout=0.3), Scripted(name="b")])
    first, second = runner.start(), runner.start(["b"])
    assert first is second
    await asyncio.sleep(0.1)
    partial = runner.current()
    assert partial is not None and partial.verdict is None
    assert partial.pending == ["a"] and [r.name for r in partial.results] == ["b"]
    run = await first
    assert runner.current() is run is runner.latest
    assert run.pending == [] and run.verdict == Verdict.NOT_READY


async def test_a_new_run_starts_after_the_last_one_finished() -> None:
    runner = Runner([Scripted(name="a")])
    first = await runner.start()
    second = await runner.start(["a"])
    assert second is not first and runner.latest is second


def test_select_rejects_unknown_names() -> None:
    runner = Runner([Scripted(name="a")])
    with pytest.raises(KeyError, match="nope"):
        runner.select(["a", "nope"])
    assert [t.name for t in runner.select(["a", "a"])] == ["a"]
    assert runner.current() is None


class Sleeper(Target):
    """A check that takes `seconds` of wall time in its thread (a slow but healthy server)."""

    kind: Literal["sleeper"] = "sleeper"
    seconds: float = 0.05

    def check(self, probe: Probe) -> None:
        with probe.step("wait", Stage.OPERATION):
            threading.Event().wait(self.seconds)


async def test_concurrent_checks_are_capped_and_the_rest_wait_as_pending() -> None:
    baseline, peak = threading.active_count(), 0
    runner = Runner([Sleeper(name=f"s{i}", seconds=0.05) for i in range(60)], concurrency=5)
    task = runner.start()
    seen_pending = 0
    while not task.done():
        peak = max(peak, threading.active_count())
        current = runner.current()
        assert current is not None
        seen_pending = max(seen_pending, len(current.pending))
        await asyncio.sleep(0.005)
    run = task.result()
    assert run.counts.passed == 60
    assert peak - baseline <= 5
    assert seen_pending >= 50  # queued targets show as pending while they wait for a slot


async def test_each_targets_timeout_counts_from_its_own_start() -> None:
    # 6 checks of 0.2 s, 2 at a time, take 0.6 s in all; each one's 0.5 s budget starts when it gets a slot
    run = await run_targets([Sleeper(name=f"s{i}", seconds=0.2, timeout=0.5) for i in range(6)], concurrency=2)
    assert [r.status for r in run.results] == [Status.PASSED] * 6
    assert run.duration_ms is not None and run.duration_ms >= 550


async def test_a_hung_check_keeps_its_slot_until_its_thread_ends() -> None:
    baseline = threading.active_count()
    hung = Scripted(name="hangs", behaviour="hang", timeout=0.2)  # its thread lives ~1 s past the deadline
    run = await run_targets([hung, *(Sleeper(name=f"s{i}", seconds=0.01) for i in range(3))], concurrency=1)
    assert run.results[0].status == Status.FAILED
    assert all(r.status == Status.PASSED for r in run.results[1:])
    assert run.duration_ms is not None and run.duration_ms >= 1000  # the others waited for the thread, not the verdict
    assert threading.active_count() <= baseline + 1


def test_warm_up_imports_what_the_configured_kinds_import_lazily() -> None:
    import subprocess
    import sys

    script = (
        "import sys\n"
        "from app.config import parse_targets\n"
        "from app.runner import warm_up\n"
        "targets = parse_targets('targets:\\n  - {name: db, kind: postgres, host: h, database: d, user: u,"
        " password: p}\\n', 'x', {})\n"
        "assert 'pg8000.native' not in sys.modules\n"
        "warm_up(targets)\n"
        "assert 'pg8000.native' in sys.modules and 'scramp' in sys.modules\n"
        "assert 'botocore' not in sys.modules  # only what the configured kinds need\n"
        "s3 = parse_targets('targets:\\n  - {name: b, kind: s3, bucket: bkt}\\n', 'x', {})\n"
        "warm_up(s3)\n"
        "from app.checks.aws import _shared_loader\n"
        "assert any('s3' in str(key) for key in _shared_loader()._cache)  # the S3 model is parsed\n"
        "bedrock = parse_targets('targets:\\n  - {name: m, kind: bedrock, region: us-east-1, model: x}\\n', 'x', {})\n"
        "warm_up(bedrock)\n"
        "assert any('bedrock-runtime' in str(key) for key in _shared_loader()._cache)  # and Bedrock's\n"
        "from app.checks.tls import _verified_context\n"
        "assert _verified_context.cache_info().currsize == 1  # and the system trust store loaded\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, timeout=60)

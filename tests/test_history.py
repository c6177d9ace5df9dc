"""The history: bounded by count and age under many runs, last change, failing since, flapping, and persistence
in a real sqlite file across a restart."""

from __future__ import annotations

import asyncio
import gc
import sqlite3
import tracemalloc
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from app import report
from app.checks.base import Stage, Status
from app.history import Flapping, History
from app.results import Result, Run
from app.store import Store
from app.tokens import GateTokens, TokenNotSaved

T0 = datetime(2026, 1, 1, 12, 0).astimezone()


def result(name: str, status: Status, at: datetime, *, required: bool = True) -> Result:
    failed = status == Status.FAILED
    return Result(
        name=name,
        kind="tcp",
        required=required,
        status=status,
        stage=Stage.CONNECT if failed else None,
        cause="[Errno 111] Connection refused" if failed else "",
        remediation="nothing listens" if failed else "",
        duration_ms=1.5,
        started_at=at,
        steps=[],
        facts={"connected_to": "127.0.0.1:1"},
    )


def run(at: datetime, **statuses: Status) -> Run:
    return Run(
        started_at=at,
        finished_at=at + timedelta(seconds=1),
        strict=False,
        results=[result(name, status, at) for name, status in statuses.items()],
        pending=[],
    )


def test_changes_last_change_and_failing_since() -> None:
    history = History()
    first = history.record(run(T0, db=Status.PASSED, cache=Status.PASSED))
    assert [(c.name, c.before, c.after) for c in first] == [("db", None, "passed"), ("cache", None, "passed")]

    assert history.record(run(T0 + timedelta(minutes=1), db=Status.PASSED, cache=Status.PASSED)) == []
    assert history.states["db"].changed_at == T0 + timedelta(seconds=1)

    broke = T0 + timedelta(minutes=2)
    changes = history.record(run(broke, db=Status.FAILED, cache=Status.PASSED))
    assert [(c.name, c.before, c.after) for c in changes] == [("db", "passed", "failed")]
    history.record(run(T0 + timedelta(minutes=3), db=Status.FAILED))  # a run of one target
    state = history.states["db"]
    assert state.failing_since == state.changed_at == broke + timedelta(seconds=1)
    assert history.states["cache"].checked_at == broke + timedelta(seconds=1)  # untouched by the one-target run

    history.record(run(T0 + timedelta(minutes=4), db=Status.PASSED))
    assert history.states["db"].failing_since is None
    assert [m.status for _, m in history.recent("db")] == ["passed", "passed", "failed", "failed", "passed"]
    assert [m.status for _, m in history.recent("cache", 30)] == ["passed"] * 3
    assert [m.cause for _, m in history.recent("db", limit=2)] == ["[Errno 111] Connection refused", ""]


def test_flapping_is_several_changes_within_the_window() -> None:
    history = History(flap=Flapping(3, timedelta(minutes=10)))
    statuses = [Status.PASSED, Status.FAILED, Status.PASSED, Status.PASSED, Status.FAILED]
    for minute, status in enumerate(statuses):
        history.record(run(T0 + timedelta(minutes=minute), db=status))
    assert history.flapping("db", T0 + timedelta(minutes=5))  # 3 changes in 5 minutes
    assert not history.flapping("db", T0 + timedelta(minutes=12))  # the first changes left the window
    assert not history.flapping("nope", T0)
    steady = History(flap=Flapping(3, timedelta(minutes=10)))
    for minute in range(20):
        steady.record(run(T0 + timedelta(minutes=minute), db=Status.FAILED))
    assert not steady.flapping("db", T0 + timedelta(minutes=20))


def test_history_is_bounded_by_count_and_age() -> None:
    by_count = History(max_runs=50)
    for i in range(500):
        by_count.record(run(T0 + timedelta(minutes=i), db=Status.PASSED))
    assert len(by_count.runs) == 50
    assert by_count.runs[0].id == 451

    by_age = History(max_runs=1000, max_age=timedelta(hours=1))
    for i in range(300):
        by_age.record(run(T0 + timedelta(minutes=i), db=Status.PASSED))
    assert len(by_age.runs) == 61  # the last hour, both ends included


def test_memory_stays_flat_under_many_runs() -> None:
    history = History(max_runs=100, flap=Flapping(3, timedelta(hours=1)))
    statuses = [Status.PASSED, Status.FAILED]

    def record(count: int, offset: int) -> None:
        for i in range(count):
            at = T0 + timedelta(minutes=offset + i)
            history.record(run(at, a=statuses[i % 2], b=Status.PASSED, c=statuses[(i // 3) % 2]))

    tracemalloc.start()
    record(500, 0)  # past every bound: the history is as full as it gets
    gc.collect()
    before = tracemalloc.get_traced_memory()[0]
    record(5000, 500)
    gc.collect()
    after = tracemalloc.get_traced_memory()[0]
    tracemalloc.stop()
    assert len(history.runs) == 100
    assert after - before < 20_000, f"grew by {after - before} bytes over 5000 runs (held {before})"


def test_the_history_and_tokens_survive_a_restart_in_a_real_sqlite_file(tmp_path: Path) -> None:
    path = tmp_path / "data" / "history.sqlite3"
    store = Store(path)
    history = History(max_runs=5, store=store)
    for i in range(8):
        history.record(run(T0 + timedelta(minutes=i), db=Status.FAILED if i >= 6 else Status.PASSED, old=Status.PASSED))
    tokens = GateTokens(store)
    kept, secret = asyncio.run(tokens.create("ci"))
    gone, gone_secret = asyncio.run(tokens.create("old"))
    assert asyncio.run(tokens.revoke(gone.id))
    store.close()

    reopened = Store(path)
    again = History(max_runs=5, store=reopened, targets=["db"])  # "old" was removed from the targets file
    assert [r.id for r in again.runs] == [4, 5, 6, 7, 8]
    assert set(again.states) == {"db"}
    assert again.states["db"] == history.states["db"]
    assert again.states["db"].failing_since == T0 + timedelta(minutes=6, seconds=1)
    again.record(run(T0 + timedelta(minutes=9), db=Status.FAILED))
    assert again.runs[-1].id == 9
    assert again.states["db"].failing_since == T0 + timedelta(minutes=6, seconds=1)
    restored = GateTokens(reopened)
    assert restored.list() == [kept]
    used = restored.verify(secret)
    assert used is not None and used.id == kept.id and used.last_used_at is not None
    assert restored.verify(gone_secret) is None
    assert restored.verify("not-a-gate-token") is None
    reopened.flush()
    count = reopened._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0]
    assert count == 5
    reopened.close()
    again.record(run(T0 + timedelta(minutes=10), db=Status.PASSED))  # after shutdown: memory only, no crash


def test_a_volume_that_refuses_writes_leaves_the_history_in_memory(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "history.sqlite3"
    store = Store(path)
    store._db.execute("CREATE TRIGGER refuse BEFORE INSERT ON runs BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    history = History(store=store)
    changes = history.record(run(T0, db=Status.FAILED))
    assert [c.name for c in changes] == ["db"] and len(history.runs) == 1
    store.flush()
    assert "cannot save run 1 in" in caplog.text and "disk full" in caplog.text
    assert store.load_runs(10) == [] and store.load_states() == {}  # the transaction rolled back whole
    store._db.execute("DROP TRIGGER refuse")  # the volume recovers: the writer goes on with the next run
    history.record(run(T0 + timedelta(minutes=1), db=Status.PASSED))
    store.close()
    reopened = Store(path)
    assert [r.id for r in reopened.load_runs(10)] == [2] and set(reopened.load_states()) == {"db"}
    reopened.close()


def test_recording_never_waits_for_the_file_and_close_applies_every_queued_write_in_order(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    store = Store(path)
    history = History(max_runs=3, store=store)
    tokens = GateTokens(store)
    token, secret = asyncio.run(tokens.create("ci"))  # a creation waits until it is on the volume
    blocker = sqlite3.connect(path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")  # another writer holds the file: a write made inline would wait here
    for i in range(5):
        history.record(run(T0 + timedelta(minutes=i), db=Status.PASSED if i < 4 else Status.FAILED))
    used = tokens.verify(secret)  # its first use is kept
    assert used is not None and used.last_used_at is not None and tokens.verify(secret) is used  # to the minute
    assert [r.id for r in history.runs] == [3, 4, 5]  # memory is current at once
    assert blocker.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 0  # the file is not, yet
    blocker.execute("COMMIT")
    blocker.close()
    store.close()
    late = store.save_token("late", token)  # after close: refused, and the caller is told
    assert isinstance(late.exception(), sqlite3.OperationalError)

    reopened = Store(path)
    again = History(max_runs=3, store=reopened)
    assert [r.id for r in again.runs] == [3, 4, 5]
    assert reopened._db.execute("SELECT COUNT(*) FROM runs").fetchone()[0] == 3  # each prune followed its run
    assert again.states["db"].failing_since == T0 + timedelta(minutes=4, seconds=1)
    assert GateTokens(reopened).list() == [used]
    reopened.close()


def test_every_renderer_carries_a_history_only_when_given_one() -> None:
    latest = run(T0, db=Status.FAILED, cache=Status.PASSED)
    past = {
        "db": {
            "runs": [{"status": "passed", "finished_at": "2025-12-31T09:30:00+00:00"}, {"status": "failed"}],
            "changed_at": "2025-12-31T09:30:00+00:00",
            "failing_since": "2025-12-31T09:30:00+00:00",
            "flapping": True,
        }
    }
    for name, renderer in report.RENDERERS.items():
        plain, carried = renderer.render(latest), renderer.render(latest, past)
        assert plain != carried and "2025-12-31T09:30:00" in carried, name
        assert "2025-12-31T09:30:00" not in plain, name
    text = report.RENDERERS["text"].render(latest, past)
    assert "  db      passed failed, changed 2025-12-31T09:30:00+00:00 (flapping)" in text
    assert "cache" not in text.split("HISTORY (oldest first)")[1]  # only targets with a history


def test_a_token_change_the_volume_refuses_changes_nothing_and_says_so(tmp_path: Path) -> None:
    path = tmp_path / "history.sqlite3"
    store = Store(path)
    tokens = GateTokens(store)
    kept, secret = asyncio.run(tokens.create("ci"))
    store._db.execute("CREATE TRIGGER full BEFORE INSERT ON gate_tokens BEGIN SELECT RAISE(ABORT, 'disk full'); END")
    store._db.execute("CREATE TRIGGER stuck BEFORE DELETE ON gate_tokens BEGIN SELECT RAISE(ABORT, 'read-only'); END")
    with pytest.raises(TokenNotSaved, match=r"^the gate token was not created: .*\(disk full\); nothing changed$"):
        asyncio.run(tokens.create("new"))
    with pytest.raises(TokenNotSaved, match=r"^the gate token was not revoked: .*\(read-only\); nothing changed$"):
        asyncio.run(tokens.revoke(kept.id))
    assert [t.name for t in tokens.list()] == ["ci"] and tokens.verify(secret) is not None  # still valid, as told
    store.close()
    assert [t.name for t in GateTokens(Store(path)).list()] == ["ci"]  # and after a restart the same

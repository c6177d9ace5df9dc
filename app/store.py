"""The embedded database (sqlite3, one file on the pod's volume) behind the history and the gate tokens.

Used only when persistence is on; the in-memory structures stay the source of truth while the pod runs and
the file is what they are rebuilt from at start-up. Rows hold JSON of the same models the API serves, so the
file never holds a secret the API would not show. Writes are a few small rows per run, in WAL mode.

Writes never run on the event loop: each one is queued to a single writer thread with its own connection,
which applies them in the order they were made (so a run is saved before the prune that follows it) and
serialises the models there too. `close` applies what is still queued before it returns. Reads happen only
at start-up, before the server takes requests, on a second connection. Run records are fire-and-forget (the
pod goes on in memory if the volume refuses them); a gate token's creation and revocation return a future the
caller awaits, because a token that silently comes back after a restart is a security defect.
"""

from __future__ import annotations

import logging
import queue
import sqlite3
import threading
from collections.abc import Callable
from concurrent.futures import Future
from pathlib import Path

from app.history import RunRecord, TargetState
from app.tokens import GateToken

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS target_states (name TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gate_tokens (id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, token TEXT NOT NULL);
"""

log = logging.getLogger("app.store")

Write = Callable[[sqlite3.Connection], object]


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()  # guards the reading connection and `_closed`
        self._closed = False
        self._db = _connect(path)  # for the reads at start-up
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.executescript(_SCHEMA)
        writer_db = _connect(path)  # opened here, so a file that cannot be opened fails the start, not the thread
        # a write, what it does (for the log) and the future of a caller who waits for it; a flush marker; or
        # None: closing
        self._writes: queue.SimpleQueue[tuple[Write, str, Future[None] | None] | Future[None] | None] = (
            queue.SimpleQueue()
        )
        self._writer = threading.Thread(target=self._write_loop, args=(writer_db,), name="store-writer", daemon=True)
        self._writer.start()

    def close(self) -> None:
        """Apply every queued write, then close; later writes are dropped (the next start re-checks anyway)."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            self._writes.put(None)  # the last item: nothing is queued once closed
        self._writer.join()
        self._db.close()

    def flush(self) -> None:
        """Wait until every write queued so far is applied (blocking: not for the event loop)."""
        done: Future[None] = Future()
        if self._enqueue(done):
            done.result()

    def load_runs(self, limit: int) -> list[RunRecord]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [RunRecord.model_validate_json(row[0]) for row in reversed(rows)]

    def load_states(self) -> dict[str, TargetState]:
        with self._lock:
            rows = self._db.execute("SELECT name, state FROM target_states").fetchall()
        return {name: TargetState.model_validate_json(state) for name, state in rows}

    def load_tokens(self) -> dict[str, GateToken]:
        with self._lock:
            rows = self._db.execute("SELECT digest, token FROM gate_tokens").fetchall()
        return {digest: GateToken.model_validate_json(token) for digest, token in rows}

    def save_run(self, record: RunRecord, states: list[TargetState]) -> None:
        def write(db: sqlite3.Connection) -> None:
            with db:  # one transaction: the run and the states it produced, or neither
                db.execute("BEGIN")
                db.execute("INSERT INTO runs (id, record) VALUES (?, ?)", (record.id, record.model_dump_json()))
                db.executemany(
                    "INSERT OR REPLACE INTO target_states (name, state) VALUES (?, ?)",
                    [(s.result.name, s.model_dump_json()) for s in states],
                )

        self._enqueue((write, f"save run {record.id}", None))

    def prune_runs(self, oldest_kept: int) -> None:
        self._enqueue((lambda db: db.execute("DELETE FROM runs WHERE id < ?", (oldest_kept,)), "prune runs", None))

    def save_token(self, digest: str, token: GateToken) -> Future[None]:
        """Done once the token is on the volume; failed with the database's error if the volume refused it."""

        def write(db: sqlite3.Connection) -> None:
            db.execute(
                "INSERT INTO gate_tokens (id, digest, token) VALUES (?, ?, ?)",
                (token.id, digest, token.model_dump_json()),
            )

        return self._awaited(write, f"save gate token {token.name!r}")

    def update_token(self, token: GateToken) -> None:
        def write(db: sqlite3.Connection) -> None:
            db.execute("UPDATE gate_tokens SET token = ? WHERE id = ?", (token.model_dump_json(), token.id))

        self._enqueue((write, f"update gate token {token.name!r}", None))

    def delete_token(self, token_id: str) -> Future[None]:
        """Done once the token is gone from the volume; failed with the database's error if it refused."""
        return self._awaited(lambda db: db.execute("DELETE FROM gate_tokens WHERE id = ?", (token_id,)), "revoke token")

    def _awaited(self, write: Write, what: str) -> Future[None]:
        done: Future[None] = Future()
        if not self._enqueue((write, what, done)):
            done.set_exception(sqlite3.OperationalError("the store is closed"))
        return done

    def _enqueue(self, item: tuple[Write, str, Future[None] | None] | Future[None]) -> bool:
        with self._lock:  # so nothing slips in behind close's marker
            if self._closed:  # a run that outlived the app (shutdown): the next start re-checks anyway
                return False
            self._writes.put(item)
            return True

    def _write_loop(self, db: sqlite3.Connection) -> None:
        try:
            while (item := self._writes.get()) is not None:
                if isinstance(item, Future):
                    item.set_result(None)
                    continue
                write, what, done = item
                try:
                    write(db)
                except sqlite3.Error as error:  # a full or broken volume: the pod goes on, in memory
                    log.warning("cannot %s in %s: %s", what, self.path, error)
                    if done is not None:
                        done.set_exception(error)
                except Exception as error:  # a bug; the writer must outlive it, or close and flush would hang
                    log.error("cannot %s in %s", what, self.path, exc_info=error)
                    if done is not None:
                        done.set_exception(error)
                else:
                    if done is not None:
                        done.set_result(None)
        finally:
            db.close()


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=5000")
    return db

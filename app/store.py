"""The embedded database (sqlite3, one file on the pod's volume) behind the history and the gate tokens.

Used only when persistence is on; the in-memory structures stay the source of truth while the pod runs and
the file is what they are rebuilt from at start-up. Rows hold JSON of the same models the API serves, so the
file never holds a secret the API would not show. Writes are a few small rows per run, in WAL mode.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

from app.history import RunRecord, TargetState
from app.tokens import GateToken

_SCHEMA = """
CREATE TABLE IF NOT EXISTS runs (id INTEGER PRIMARY KEY, record TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS target_states (name TEXT PRIMARY KEY, state TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS gate_tokens (id TEXT PRIMARY KEY, digest TEXT NOT NULL UNIQUE, token TEXT NOT NULL);
"""


log = logging.getLogger("app.store")


class Store:
    def __init__(self, path: Path) -> None:
        path.parent.mkdir(parents=True, exist_ok=True)
        self.path = path
        self._lock = threading.Lock()
        self._closed = False
        self._db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._closed = True
            self._db.close()

    def load_runs(self, limit: int) -> list[RunRecord]:
        with self._lock:
            rows = self._db.execute("SELECT record FROM runs ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
        return [RunRecord.model_validate_json(row[0]) for row in reversed(rows)]

    def load_states(self) -> dict[str, TargetState]:
        with self._lock:
            rows = self._db.execute("SELECT name, state FROM target_states").fetchall()
        return {name: TargetState.model_validate_json(state) for name, state in rows}

    def save_run(self, record: RunRecord, states: list[TargetState]) -> None:
        if self._closed:  # a run that outlived the app (shutdown): the next start re-checks anyway
            return
        try:
            with self._lock, self._db:
                self._db.execute("BEGIN")
                self._db.execute("INSERT INTO runs (id, record) VALUES (?, ?)", (record.id, record.model_dump_json()))
                self._db.executemany(
                    "INSERT OR REPLACE INTO target_states (name, state) VALUES (?, ?)",
                    [(s.result.name, s.model_dump_json()) for s in states],
                )
        except sqlite3.Error as error:  # a full or broken volume: the run still counts, in memory
            log.warning("cannot save run %d to %s: %s", record.id, self.path, error)

    def prune_runs(self, oldest_kept: int) -> None:
        if self._closed:
            return
        with self._lock:
            self._db.execute("DELETE FROM runs WHERE id < ?", (oldest_kept,))

    def load_tokens(self) -> dict[str, GateToken]:
        with self._lock:
            rows = self._db.execute("SELECT digest, token FROM gate_tokens").fetchall()
        return {digest: GateToken.model_validate_json(token) for digest, token in rows}

    def save_token(self, digest: str, token: GateToken) -> None:
        with self._lock:
            self._db.execute(
                "INSERT INTO gate_tokens (id, digest, token) VALUES (?, ?, ?)",
                (token.id, digest, token.model_dump_json()),
            )

    def delete_token(self, token_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM gate_tokens WHERE id = ?", (token_id,))

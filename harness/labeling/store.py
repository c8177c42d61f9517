"""The label store: one SQLite file per round, in WAL mode, one transaction per submitted judgment.

Why SQLite and not a JSONL file: a judgment is committed (``BEGIN IMMEDIATE`` ... ``COMMIT`` with
``synchronous=FULL``) before the page hears "saved", so a killed server or a crashed machine keeps every label the
person saw acknowledged, and a second connection (the training loop polling for completion, an export) sees it at
once. WAL lets those readers run while the page writes.

A judgment is one prompt shown once to one annotator: the best image (optionally the worst, or a full ranking),
images flagged distorted and/or unsafe, or a skip. Positions are indices into the prompt's images in round order
(0..k-1), whatever order the page displayed them in (``display`` keeps that order, for position-bias checks).
``showing`` is 0 for the first time an annotator sees a prompt and 1 for the repeat shown for self-agreement.

Nothing is deleted: undo stamps ``undone`` on the annotator's latest live judgment, so the history stays auditable.
At most one live judgment per (annotator, prompt, showing) (a partial unique index), and a client request id makes a
resent submission (a retry after a lost response) a no-op instead of a duplicate.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import DataError

SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS labels (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    annotator TEXT NOT NULL,
    grp INTEGER NOT NULL,
    showing INTEGER NOT NULL,
    action TEXT NOT NULL CHECK (action IN ('choice', 'skip')),
    best INTEGER,
    worst INTEGER,
    ranking TEXT,
    distorted TEXT NOT NULL DEFAULT '[]',
    unsafe TEXT NOT NULL DEFAULT '[]',
    display TEXT NOT NULL DEFAULT '[]',
    elapsed_ms INTEGER,
    request_id TEXT UNIQUE,
    created REAL NOT NULL,
    undone REAL
);
CREATE UNIQUE INDEX IF NOT EXISTS live_label ON labels (annotator, grp, showing) WHERE undone IS NULL;
"""


class LabelConflict(DataError):
    """The annotator already has a live judgment for this prompt and showing (undo it first)."""


@dataclass(frozen=True)
class Judgment:
    """One stored judgment (see the module docstring); positions index the prompt's images in round order."""

    id: int
    annotator: str
    group: int
    showing: int
    action: str  # "choice" | "skip"
    best: int | None = None
    worst: int | None = None
    ranking: tuple[int, ...] | None = None  # positions, best first
    distorted: tuple[int, ...] = ()
    unsafe: tuple[int, ...] = ()
    display: tuple[int, ...] = ()
    elapsed_ms: int | None = None
    created: float = 0.0
    undone: float | None = None
    request_id: str | None = field(default=None, compare=False)

    @property
    def live(self) -> bool:
        return self.undone is None

    def to_dict(self) -> dict:
        return {"id": self.id, "annotator": self.annotator, "group": self.group, "showing": self.showing,
                "action": self.action, "best": self.best, "worst": self.worst,
                "ranking": None if self.ranking is None else list(self.ranking), "distorted": list(self.distorted),
                "unsafe": list(self.unsafe), "display": list(self.display), "elapsed_ms": self.elapsed_ms,
                "created": self.created, "undone": self.undone}


class LabelStore:
    """The labels of one round (``ROUND/labels.sqlite``). Each call opens its own connection, so the store is safe
    to use from the server's worker threads and from another process at the same time."""

    def __init__(self, path: Path, fingerprint: str | None = None) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._db() as db:
            mode = db.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if mode.lower() != "wal":
                raise DataError(f"{self.path}: SQLite refused WAL mode ({mode}); put the round on a local disk")
            db.executescript(SCHEMA)
            if fingerprint is not None:
                db.execute("BEGIN IMMEDIATE")
                row = db.execute("SELECT value FROM meta WHERE key = 'round'").fetchone()
                if row is None:
                    db.execute("INSERT INTO meta VALUES ('round', ?)", (fingerprint,))
                db.execute("COMMIT")
                if row is not None and row[0] != fingerprint:
                    raise DataError(f"{self.path} holds labels of another round (its prompts or images changed); "
                                    "move the old labels.sqlite away or label a fresh round folder")

    @contextmanager
    def _db(self) -> Iterator[sqlite3.Connection]:
        db = sqlite3.connect(self.path, timeout=30, isolation_level=None)  # autocommit; explicit transactions
        try:
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA busy_timeout=30000")
            yield db
        finally:
            db.close()

    def add(self, annotator: str, group: int, showing: int, action: str, *, best: int | None = None,
            worst: int | None = None, ranking: list[int] | None = None, distorted: list[int] | None = None,
            unsafe: list[int] | None = None, display: list[int] | None = None, elapsed_ms: int | None = None,
            request_id: str | None = None) -> Judgment:
        """Commit one judgment in its own transaction and return it; a ``request_id`` seen before returns the
        stored judgment unchanged (an idempotent retry). A second live judgment for the same (annotator, group,
        showing) raises :class:`LabelConflict`. Values are validated by the caller (the app knows the round)."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            try:
                if request_id is not None:
                    seen = db.execute("SELECT * FROM labels WHERE request_id = ?", (request_id,)).fetchone()
                    if seen is not None:
                        db.execute("COMMIT")
                        return _judgment(seen)
                live = db.execute("SELECT id FROM labels WHERE annotator = ? AND grp = ? AND showing = ? AND "
                                  "undone IS NULL", (annotator, group, showing)).fetchone()
                if live is not None:
                    raise LabelConflict(f"annotator {annotator!r} already labelled prompt {group} (showing "
                                        f"{showing}); undo it first")
                cursor = db.execute(
                    "INSERT INTO labels (annotator, grp, showing, action, best, worst, ranking, distorted, unsafe, "
                    "display, elapsed_ms, request_id, created) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
                    (annotator, group, showing, action, best, worst, None if ranking is None else json.dumps(ranking),
                     json.dumps(sorted(distorted or [])), json.dumps(sorted(unsafe or [])), json.dumps(display or []),
                     elapsed_ms, request_id, time.time()))
                row = db.execute("SELECT * FROM labels WHERE id = ?", (cursor.lastrowid,)).fetchone()
                db.execute("COMMIT")
            except BaseException:
                db.execute("ROLLBACK")
                raise
        return _judgment(row)

    def undo(self, annotator: str) -> Judgment | None:
        """Mark the annotator's latest live judgment undone (one transaction); returns it, or None when there is
        nothing left to undo."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            row = db.execute("SELECT * FROM labels WHERE annotator = ? AND undone IS NULL ORDER BY id DESC LIMIT 1",
                             (annotator,)).fetchone()
            if row is not None:
                db.execute("UPDATE labels SET undone = ? WHERE id = ?", (time.time(), row[0]))
            db.execute("COMMIT")
        if row is None:
            return None
        return _judgment(db_row=row, undone=True)

    def judgments(self, live_only: bool = True, annotator: str | None = None) -> list[Judgment]:
        """Stored judgments in submission order (live ones only unless ``live_only`` is False)."""
        sql = "SELECT * FROM labels"
        where, args = [], []
        if live_only:
            where.append("undone IS NULL")
        if annotator is not None:
            where.append("annotator = ?")
            args.append(annotator)
        if where:
            sql += " WHERE " + " AND ".join(where)
        with self._db() as db:
            return [_judgment(row) for row in db.execute(sql + " ORDER BY id", args).fetchall()]

    def close_round(self, by: str) -> None:
        """Record that the round is done (the page's "finish round" button or ``harness label close``): a waiting
        training loop stops waiting and trains on the labels there are."""
        with self._db() as db:
            db.execute("BEGIN IMMEDIATE")
            db.execute("INSERT OR REPLACE INTO meta VALUES ('closed', ?)", (json.dumps({"by": by, "at": time.time()}),))
            db.execute("COMMIT")

    def closed(self) -> dict | None:
        with self._db() as db:
            row = db.execute("SELECT value FROM meta WHERE key = 'closed'").fetchone()
        return None if row is None else json.loads(row[0])


def _judgment(db_row: tuple, undone: bool = False) -> Judgment:
    (id_, annotator, group, showing, action, best, worst, ranking, distorted, unsafe, display, elapsed_ms, request_id,
     created, undone_at) = db_row
    return Judgment(id=id_, annotator=annotator, group=group, showing=showing, action=action, best=best, worst=worst,
                    ranking=None if ranking is None else tuple(json.loads(ranking)),
                    distorted=tuple(json.loads(distorted)), unsafe=tuple(json.loads(unsafe)),
                    display=tuple(json.loads(display)), elapsed_ms=elapsed_ms, created=created,
                    undone=time.time() if undone and undone_at is None else undone_at, request_id=request_id)

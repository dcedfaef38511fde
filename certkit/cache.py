"""A count cache (stdlib sqlite3): re-running an unchanged audit does no forward passes.

Each entry holds the oracle label of every sample drawn so far for one *sample stream*: one model
(weights fingerprint and generation settings), one oracle (name, version, configuration), one case
(content hash of prompt and pixels), one pair of kernels (parameters) and one seed. A changed model,
oracle, case, kernel or seed is a different key, so counts are never reused across them. Samples are
kept in draw order, so a later run that needs more samples extends the stream where it stopped.

Every row carries a SHA-256 of its payload; a row that fails it is dropped and recomputed, and a file
that sqlite cannot read is moved aside (``*.corrupt-<time>``) and rebuilt.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from pathlib import Path

import numpy as np

__all__ = ["CountCache", "stream_key"]

_SCHEMA = 1


def stream_key(**parts) -> str:
    """Stable key from the parts that determine a sample stream."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


class CountCache:
    """Per-sample oracle labels (uint8 indices into the oracle's label list), keyed by :func:`stream_key`."""

    def __init__(self, directory: str | Path):
        self.directory = Path(directory)
        self.path = self.directory / "counts.sqlite"
        self.rebuilt = False
        self._open()

    def _connect(self) -> sqlite3.Connection:
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=60)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute(
            "CREATE TABLE IF NOT EXISTS streams (key TEXT PRIMARY KEY, labels BLOB NOT NULL, "
            "label_names TEXT NOT NULL, checksum TEXT NOT NULL, updated REAL NOT NULL)"
        )
        conn.execute("CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT)")
        conn.execute("INSERT OR IGNORE INTO meta VALUES ('schema', ?)", (str(_SCHEMA),))
        row = conn.execute("SELECT value FROM meta WHERE name = 'schema'").fetchone()
        if row is None or row[0] != str(_SCHEMA):
            raise sqlite3.DatabaseError(f"cache schema {row[0] if row else None} is not {_SCHEMA}")
        check = conn.execute("PRAGMA quick_check").fetchone()
        if check is None or check[0] != "ok":
            raise sqlite3.DatabaseError(f"integrity check failed: {check}")
        conn.commit()
        return conn

    def _open(self) -> None:
        try:
            self._conn = self._connect()
        except sqlite3.DatabaseError:
            self._move_aside()
            self._conn = self._connect()

    def _move_aside(self) -> None:
        stamp = time.strftime("%Y%m%dT%H%M%S")
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                p.rename(Path(str(p) + f".corrupt-{stamp}"))
        self.rebuilt = True

    @staticmethod
    def _checksum(key: str, blob: bytes, names: str) -> str:
        return hashlib.sha256(key.encode() + b"\0" + names.encode() + b"\0" + blob).hexdigest()

    def get(self, key: str, label_names: tuple[str, ...]) -> np.ndarray:
        """The cached label indices of stream ``key`` (possibly empty)."""
        names = json.dumps(list(label_names))
        try:
            row = self._conn.execute("SELECT labels, label_names, checksum FROM streams WHERE key = ?", (key,)).fetchone()
        except sqlite3.DatabaseError:
            self._conn.close()
            self._move_aside()
            self._conn = self._connect()
            return np.zeros(0, dtype=np.uint8)
        if row is None:
            return np.zeros(0, dtype=np.uint8)
        blob, stored_names, checksum = row
        if stored_names != names or self._checksum(key, blob, stored_names) != checksum:
            self._conn.execute("DELETE FROM streams WHERE key = ?", (key,))
            self._conn.commit()
            return np.zeros(0, dtype=np.uint8)
        return np.frombuffer(blob, dtype=np.uint8).copy()

    def put(self, key: str, label_names: tuple[str, ...], labels: np.ndarray) -> None:
        """Store the whole stream (it only ever grows)."""
        names = json.dumps(list(label_names))
        blob = np.ascontiguousarray(labels, dtype=np.uint8).tobytes()
        self._conn.execute(
            "INSERT OR REPLACE INTO streams VALUES (?, ?, ?, ?, ?)",
            (key, blob, names, self._checksum(key, blob, names), time.time()),
        )
        self._conn.commit()

    def close(self) -> None:
        conn = getattr(self, "_conn", None)
        if conn is not None:
            conn.close()
            self._conn = None

    def __del__(self) -> None:
        # Python's sqlite3 connection sits in a reference cycle with its statement cache, so without this it
        # would stay open (holding the WAL) until the cyclic garbage collector happens to run
        try:
            self.close()
        except Exception:
            pass

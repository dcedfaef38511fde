"""A count cache (stdlib sqlite3): re-running an unchanged audit does no forward passes.

Each entry holds the oracle label of every sample drawn so far for one *sample stream*: one model
(its fingerprint: weights, code, tokenizer, processor and generation settings), one oracle (name, version,
configuration), one case (content hash of prompt and pixels, and the ids and editable positions the model
encodes it to), one pair of kernels (parameters) and one seed. A changed model, oracle, case, kernel or seed
is a different key, so counts are never reused across them. Samples are kept in draw order, so a later run
that needs more samples extends the stream where it stopped.

Every row carries a SHA-256 of its payload; a row that fails it is dropped and recomputed. Only real
corruption (a file sqlite reports as corrupt or not a database, a wrong schema, a failed integrity check)
moves the file aside, under a name no other backup shares, and rebuilds it. A cache that is busy past
``timeout`` seconds (another process holds its lock), full, read-only or not a directory is never moved:
certkit runs on without it, computing every count, and says so once with a :class:`CacheWarning`.
"""

from __future__ import annotations

import hashlib
import json
import os
import sqlite3
import time
import uuid
import warnings
from pathlib import Path

import numpy as np

__all__ = ["CountCache", "CacheWarning", "stream_key"]

_SCHEMA = 1


class CacheWarning(UserWarning):
    """The count cache is off for this run (busy, full, read-only, unusable); counts are computed, not reused."""


def stream_key(**parts) -> str:
    """SHA-256 hex key of the parts that determine a sample stream (JSON with sorted keys, other values by ``str``):
    the same parts give the same key in every process; any changed part gives another."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def _is_corruption(exc: sqlite3.DatabaseError) -> bool:
    """Corrupt or not a database (sqlite's own verdict), or certkit's schema or integrity check (a plain
    DatabaseError). Busy, locked, full, read-only and cannot-open are OperationalErrors, not corruption."""
    return getattr(exc, "sqlite_errorname", None) in ("SQLITE_CORRUPT", "SQLITE_NOTADB") or type(exc) is sqlite3.DatabaseError


class CountCache:
    """Per-sample oracle labels (uint8 indices into the oracle's label list), keyed by :func:`stream_key`, in
    ``directory/counts.sqlite``.

    Never raises for the state of the file (see the module docstring): ``disabled`` is None while the cache works,
    else why it is off for the rest of this run (reads then return nothing, writes do nothing); ``rebuilt`` is True
    once a corrupt file was moved aside and started anew. ``timeout``: seconds to wait for another process's lock."""

    def __init__(self, directory: str | Path, timeout: float = 60.0):
        self.directory = Path(directory)
        self.path = self.directory / "counts.sqlite"
        self.timeout = float(timeout)
        self.rebuilt = False
        self.disabled: str | None = None
        self._conn: sqlite3.Connection | None = None
        self._guarded(self._open, None)

    # ------------------------------------------------------------------ opening

    def _connect(self) -> sqlite3.Connection:
        self.directory.mkdir(parents=True, exist_ok=True)
        conn = sqlite3.connect(self.path, timeout=self.timeout)
        try:
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
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> None:
        self.close()
        self._conn = self._connect()

    def _recover(self) -> None:
        """Corruption: move the file aside and start a new one."""
        self.close()
        self._move_aside()
        self._conn = self._connect()

    def _guarded(self, action, default):
        """Run ``action``; corruption rebuilds the file (and retries once), anything else turns the cache off."""
        if self.disabled is not None:
            return default
        try:
            try:
                return action()
            except sqlite3.DatabaseError as exc:
                if not _is_corruption(exc):
                    raise
                self._recover()
                return action()
        except (sqlite3.Error, OSError) as exc:
            self._disable(exc)
            return default

    def _disable(self, exc: Exception) -> None:
        self.close()
        reason = getattr(exc, "strerror", None) or str(exc)
        if isinstance(exc, sqlite3.OperationalError) and "locked" in reason:
            reason += f" (another process held it for more than {self.timeout:g} s)"
        self.disabled = reason
        warnings.warn(CacheWarning(f"certkit: the count cache {self.path} is off for this run ({reason}); every count is computed, "
                                   "none reused or stored. The file was left as it is."), stacklevel=3)

    def _move_aside(self) -> None:
        """Keep the corrupt files for inspection, under a name no other backup (same second, other process) shares."""
        stamp = f"{time.strftime('%Y%m%dT%H%M%S')}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        for suffix in ("", "-wal", "-shm"):
            p = Path(str(self.path) + suffix)
            if p.exists():
                p.rename(Path(str(p) + f".corrupt-{stamp}"))
        self.rebuilt = True

    # ------------------------------------------------------------------ reading and writing

    @staticmethod
    def _checksum(key: str, blob: bytes, names: str) -> str:
        return hashlib.sha256(key.encode() + b"\0" + names.encode() + b"\0" + blob).hexdigest()

    def get(self, key: str, label_names: tuple[str, ...]) -> np.ndarray:
        """The cached label indices of stream ``key``, a uint8 array in draw order: empty when there are none, when the
        cache is off, or when the row's label names differ from ``label_names`` or its checksum fails (the row is
        then deleted)."""
        names = json.dumps(list(label_names))

        def read():
            row = self._conn.execute("SELECT labels, label_names, checksum FROM streams WHERE key = ?", (key,)).fetchone()
            if row is None:
                return np.zeros(0, dtype=np.uint8)
            blob, stored_names, checksum = row
            if stored_names != names or self._checksum(key, blob, stored_names) != checksum:
                self._conn.execute("DELETE FROM streams WHERE key = ?", (key,))
                self._conn.commit()
                return np.zeros(0, dtype=np.uint8)
            return np.frombuffer(blob, dtype=np.uint8).copy()

        return self._guarded(read, np.zeros(0, dtype=np.uint8))

    def put(self, key: str, label_names: tuple[str, ...], labels: np.ndarray) -> None:
        """Store the whole stream under ``key``, replacing what was there (callers pass the cached labels extended,
        so a stream only grows); a cache that cannot take it turns off, losing nothing else."""
        names = json.dumps(list(label_names))
        blob = np.ascontiguousarray(labels, dtype=np.uint8).tobytes()

        def write():
            self._conn.execute(
                "INSERT OR REPLACE INTO streams VALUES (?, ?, ?, ?, ?)",
                (key, blob, names, self._checksum(key, blob, names), time.time()),
            )
            self._conn.commit()

        self._guarded(write, None)

    def close(self) -> None:
        """Close the database connection (idempotent). The object is not reopened: use a new one to read again."""
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

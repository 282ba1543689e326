"""Locks that make a thread's first pin atomic across replicas (for :class:`BaseStorePinStore`).

Example:
    >>> lock = PostgresAdvisoryLock("postgresql://app@db/app")          # doctest: +SKIP
    >>> pins = BaseStorePinStore(postgres_store, lock=lock)               # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["PostgresAdvisoryLock"]


class PostgresAdvisoryLock:
    """Serialises first pins of one (thread, group) across processes with a PostgreSQL
    session-level advisory lock (``pg_advisory_lock``), on one connection per process.

    Needs ``psycopg`` (version 3), which LangGraph's Postgres store uses too. Only a thread's
    first decision takes the lock; calls that find a pin never do.
    """

    def __init__(self, conninfo: str) -> None:
        self.conninfo = conninfo
        self._conn: Any = None
        self._mutex = threading.Lock()

    @staticmethod
    def key(thread: str, group: str) -> int:
        """A signed 64-bit lock key for (thread, group)."""
        digest = hashlib.blake2b(f"{thread}\0{group}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    @contextmanager
    def __call__(self, thread: str, group: str) -> Iterator[None]:
        import psycopg

        key = self.key(thread, group)
        with self._mutex:
            if self._conn is None or self._conn.closed:
                self._conn = psycopg.connect(self.conninfo, autocommit=True)
            self._conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            try:
                yield
            finally:
                self._conn.execute("SELECT pg_advisory_unlock(%s)", (key,))

    def close(self) -> None:
        with self._mutex:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

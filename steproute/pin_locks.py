"""Locks that make a thread's first pin atomic across replicas (for :class:`BaseStorePinStore`).

Example:
    >>> lock = PostgresAdvisoryLock("postgresql://app@db/app")          # doctest: +SKIP
    >>> pins = BaseStorePinStore(postgres_store, lock=lock)               # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from steproute.errors import StepRouteError
from steproute.pinning import KeyedLocks

__all__ = ["PostgresAdvisoryLock", "StoreLockError"]


class StoreLockError(StepRouteError):
    """A store lock could not be taken: its connection to the server was lost or refused.
    The message names the lock's store, never the thread or group it was taken for."""


class PostgresAdvisoryLock:
    """Serialises first pins of one (thread, group) across processes with a PostgreSQL
    session-level advisory lock (``pg_advisory_lock``).

    Each key is taken on its own connection (kept for reuse, at most ``max_connections``), so
    a key held by another replica blocks only callers of that key, never unrelated threads;
    callers of one key in this process take turns. A connection lost while taking the lock
    raises :class:`StoreLockError`. Needs ``psycopg`` (version 3), which LangGraph's Postgres
    store uses too. Only a thread's first decision takes the lock; calls that find a pin never do.
    """

    def __init__(self, conninfo: str, *, max_connections: int = 8) -> None:
        if max_connections < 1:
            raise ValueError("PostgresAdvisoryLock: max_connections must be at least 1")
        self.conninfo = conninfo
        self._keys = KeyedLocks(max_keys=max_connections)
        self._idle: list[Any] = []
        self._pid = os.getpid()
        self._mutex = threading.Lock()  # guards the idle list only; never held while waiting

    @staticmethod
    def key(thread: str, group: str) -> int:
        """A signed 64-bit lock key for (thread, group)."""
        digest = hashlib.blake2b(f"{thread}\0{group}".encode(), digest_size=8).digest()
        return int.from_bytes(digest, "big", signed=True)

    def _connection(self) -> Any:
        import psycopg

        while True:
            with self._mutex:
                if self._pid != os.getpid():  # a forked child: the parent's sessions are not ours
                    self._idle, self._pid = [], os.getpid()
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                break
            try:
                conn.execute("SELECT 1")  # an idle session the server dropped is replaced, not an error
                return conn
            except psycopg.Error:
                conn.close()
        try:
            return psycopg.connect(self.conninfo, autocommit=True)
        except psycopg.Error as exc:
            raise StoreLockError("PostgresAdvisoryLock: cannot connect to PostgreSQL to take the store lock "
                                 f"({type(exc).__name__})") from exc

    def _keep(self, conn: Any) -> None:
        with self._mutex:
            if self._pid == os.getpid():
                self._idle.append(conn)
                return
        conn.close()

    def _take(self, key: int) -> Any:
        import psycopg

        conn = self._connection()
        try:
            conn.execute("SELECT pg_advisory_lock(%s)", (key,))
            return conn
        except psycopg.Error as exc:
            conn.close()
            raise StoreLockError("PostgresAdvisoryLock: the PostgreSQL connection of the store lock was lost "
                                 f"while taking the lock ({type(exc).__name__})") from exc

    @contextmanager
    def __call__(self, thread: str, group: str) -> Iterator[None]:
        import psycopg

        key = self.key(thread, group)
        with self._keys.hold(key):
            conn = self._take(key)
            try:
                yield
            finally:
                try:
                    conn.execute("SELECT pg_advisory_unlock(%s)", (key,))
                except psycopg.Error:
                    conn.close()  # the session is gone, and the server released its locks with it
                else:
                    self._keep(conn)

    def close(self) -> None:
        with self._mutex:
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

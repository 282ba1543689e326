"""The advisory lock on a real PostgreSQL server: one key held by another replica blocks only
that key in this process, and a lock connection the server drops is a typed steproute error."""

from __future__ import annotations

import threading
import time

import pytest

from tests.integration.test_pins_postgres import postgres  # noqa: F401  (the server fixture)

pytestmark = pytest.mark.integration


def _waiting_on_advisory_lock(admin, deadline=10.0):
    """Backend pids of sessions waiting for an advisory lock."""
    end = time.monotonic() + deadline
    while time.monotonic() < end:
        pids = [r[0] for r in admin.execute("SELECT pid FROM pg_stat_activity WHERE wait_event_type = 'Lock' "
                                            "AND wait_event = 'advisory'").fetchall()]
        if pids:
            return pids
        time.sleep(0.05)
    raise AssertionError("no session waits for an advisory lock")


def test_a_key_held_by_another_replica_blocks_only_that_key(postgres):  # noqa: F811
    import psycopg

    from steproute.pin_locks import PostgresAdvisoryLock

    lock = PostgresAdvisoryLock(postgres)
    events: list[str] = []
    with psycopg.connect(postgres, autocommit=True) as replica, psycopg.connect(postgres, autocommit=True) as admin:
        replica.execute("SELECT pg_advisory_lock(%s)", (PostgresAdvisoryLock.key("t1", "answer"),))

        def take(thread):
            with lock(thread, "answer"):
                events.append(thread)

        blocked = threading.Thread(target=take, args=("t1",))
        blocked.start()
        _waiting_on_advisory_lock(admin)
        other = threading.Thread(target=take, args=("t2",))
        other.start()
        other.join(10)
        assert events == ["t2"], "an unrelated thread waited for another replica's lock"
        replica.execute("SELECT pg_advisory_unlock(%s)", (PostgresAdvisoryLock.key("t1", "answer"),))
        blocked.join(10)
        assert events == ["t2", "t1"]
    lock.close()


def test_a_lost_lock_connection_is_a_typed_error_naming_the_store(postgres):  # noqa: F811
    import psycopg

    from steproute.errors import StepRouteError
    from steproute.pin_locks import PostgresAdvisoryLock, StoreLockError

    lock = PostgresAdvisoryLock(postgres)
    thread_id = "user-secret-thread-42"
    caught: list[BaseException] = []
    with psycopg.connect(postgres, autocommit=True) as replica, psycopg.connect(postgres, autocommit=True) as admin:
        replica.execute("SELECT pg_advisory_lock(%s)", (PostgresAdvisoryLock.key(thread_id, "answer"),))

        def take():
            try:
                with lock(thread_id, "answer"):
                    pass
            except BaseException as exc:  # the test inspects what came out
                caught.append(exc)

        waiter = threading.Thread(target=take)
        waiter.start()
        for pid in _waiting_on_advisory_lock(admin):
            admin.execute("SELECT pg_terminate_backend(%s)", (pid,))
        waiter.join(10)
    assert len(caught) == 1 and isinstance(caught[0], StoreLockError) and isinstance(caught[0], StepRouteError)
    assert "PostgresAdvisoryLock" in str(caught[0]) and thread_id not in str(caught[0])
    with lock("t-after", "answer"):  # the next lock takes a fresh connection
        pass
    lock.close()

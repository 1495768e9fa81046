"""django://default on this run's database, through Django's own test runner.

The runner made the test database and applied the wsgi_session app's migration
to it; these tests use Django's public session API (SessionBase, the test
Client, clearsessions, the system checks) and the store's own contract.
"""

from __future__ import annotations

import threading
import time
from typing import Any

from django.conf import settings
from django.contrib.auth.models import User
from django.contrib.sessions.backends.base import UpdateError
from django.core import checks
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client, TestCase, TransactionTestCase

from dbtests import views
from wsgi_session.django.engine import SessionStore
from wsgi_session.django.store import PURGE_BATCH, TABLE, DjangoDatabaseStore

VENDOR = connection.vendor  # postgresql, mysql or sqlite
SEPARATE_CONNECTION = VENDOR != "sqlite"


class Clock:
    def __init__(self) -> None:
        self.now = time.time()

    def __call__(self) -> float:
        return self.now


def rows() -> int:
    with connection.cursor() as cursor:
        cursor.execute(f"SELECT count(*) FROM {connection.ops.quote_name(TABLE)}")  # noqa: S608
        return int(cursor.fetchone()[0])


class TheTable(TransactionTestCase):
    def test_the_migration_made_the_table_in_the_test_database(self) -> None:
        self.assertIn("test", settings.DATABASES["default"]["NAME"])
        self.assertIn(TABLE, connection.introspection.table_names())
        self.assertEqual(DjangoDatabaseStore().schema_problems(), [])

    def test_the_system_checks_pass_then_name_a_missing_or_wrong_table(self) -> None:
        def ours() -> list[str]:
            found = checks.run_checks(databases=["default"], include_deployment_checks=False)
            return [f"{m.id} {m.msg}" for m in found if m.id and m.id.startswith("wsgi_session")]

        self.assertEqual(ours(), [])
        call_command("migrate", "wsgi_session", "zero", verbosity=0)
        try:
            (missing,) = ours()
            self.assertTrue(missing.startswith("wsgi_session.W001 settings.WSGI_SESSION_STORE"))
            self.assertIn("run manage.py migrate", missing)
            quoted = connection.ops.quote_name(TABLE)
            with connection.cursor() as cursor:
                cursor.execute(f"CREATE TABLE {quoted} (id integer PRIMARY KEY, data text)")
            try:
                problems = ours()
            finally:
                with connection.cursor() as cursor:
                    cursor.execute(f"DROP TABLE {quoted}")
            self.assertEqual(len(problems), 4)  # key, version, expires, owner
            self.assertTrue(all(p.startswith("wsgi_session.E003") for p in problems), problems)
            self.assertIn("has no column 'key'", problems[0])
        finally:
            call_command("migrate", "wsgi_session", verbosity=0)
        self.assertEqual(ours(), [])

    def test_a_bad_alias_is_refused_naming_the_setting(self) -> None:
        with self.settings(WSGI_SESSION_STORE="django://nowhere"):
            found = checks.run_checks(include_deployment_checks=False)
        (error,) = [m for m in found if m.id == "wsgi_session.E001"]
        self.assertIn("WSGI_SESSION_STORE", error.msg)
        self.assertIn("django://nowhere names no database of DATABASES", error.msg)


class TheStore(TransactionTestCase):
    """The store contract (store_contract.py's promises) on the real database."""

    def setUp(self) -> None:
        self.clock = Clock()
        self.store = DjangoDatabaseStore("default", clock=self.clock)

    def test_round_trip_create_conflict_and_compare_and_set(self) -> None:
        store = self.store
        value = b"\x00\xff binary\r\n'quoted' \\x00"
        self.assertTrue(store.save("k", value, ttl=60))
        self.assertEqual(store.load("k")[0], value)  # type: ignore[index]
        self.assertFalse(store.save("k", b"second", ttl=60))
        token = store.load("k")[1]  # type: ignore[index]
        self.assertTrue(store.save("k", b"v2", ttl=60, version=token))
        self.assertFalse(store.save("k", b"stale", ttl=60, version=token))
        self.assertEqual(store.load("k")[0], b"v2")  # type: ignore[index]
        store.delete("k")
        self.assertIsNone(store.load("k"))
        self.assertFalse(store.save("k", b"v3", ttl=60, version=token))  # never recreated
        store.delete("k")  # missing: not an error

    def test_expired_records_are_invisible_and_reused_by_a_create(self) -> None:
        store = self.store
        store.save("k", b"v1", ttl=10)
        token = store.load("k")[1]  # type: ignore[index]
        self.clock.now += 10
        self.assertIsNone(store.load("k"))
        self.assertFalse(store.save("k", b"v2", ttl=10, version=token))
        self.assertTrue(store.save("k", b"v3", ttl=10))
        self.assertEqual(store.load("k")[0], b"v3")  # type: ignore[index]

    def test_concurrent_compare_and_set_loses_no_update(self) -> None:
        store = DjangoDatabaseStore("default")
        store.save("counter", b"0", ttl=60)
        errors: list[BaseException] = []

        def increment() -> None:
            try:
                for _ in range(25):
                    while True:
                        count, token = store.load("counter")  # type: ignore[misc]
                        if store.save("counter", b"%d" % (int(count) + 1), 60, token):
                            break
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=increment) for _ in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        self.assertEqual(errors, [])
        self.assertEqual(store.load("counter")[0], b"200")  # type: ignore[index]

    def test_the_owner_index(self) -> None:
        store = self.store
        for key in ("a", "b"):
            store.save(key, b"v", ttl=60)
            store.index_owner("owner-1", key, int(self.clock.now) + 60)
        self.assertEqual(sorted(store.owned("owner-1")), ["a", "b"])
        store.unindex_owner("owner-1", "a")
        store.unindex_owner("someone-else", "b")  # not theirs: stays
        self.assertEqual(store.owned("owner-1"), ["b"])

    def test_purge_and_clearsessions_delete_expired_rows_in_batches(self) -> None:
        past = DjangoDatabaseStore("default", clock=lambda: time.time() - 3600)
        for index in range(PURGE_BATCH + 7):
            past.save(f"old{index}", b"v", ttl=60)
        self.store.save("live", b"v", ttl=60)
        call_command("clearsessions")
        self.assertEqual(rows(), 1)
        self.assertIsNotNone(self.store.load("live"))


class DjangosSessionAPI(TestCase):
    """SessionBase's promises, as test_django_engine.py checks them on the other stores."""

    def test_create_save_load_exists_delete(self) -> None:
        session = SessionStore()
        session["a"] = 1
        session.create()
        key = session.session_key
        assert key is not None
        self.assertTrue(SessionStore().exists(key))
        self.assertEqual(SessionStore(key).load(), {"a": 1})
        SessionStore(key).delete()
        self.assertFalse(SessionStore().exists(key))

    def test_concurrent_saves_keep_each_others_keys(self) -> None:
        session = SessionStore()
        session["seed"] = 1
        session.save()
        key = session.session_key
        one, two = SessionStore(key), SessionStore(key)
        one["seed"], two["seed"]  # both loaded the same version
        one["a"] = 1
        one.save()
        two["b"] = 2
        two.save()  # conflicts with the first, and merges
        self.assertEqual(SessionStore(key).load(), {"seed": 1, "a": 1, "b": 2})

    def test_a_logout_is_never_undone_by_a_request_in_flight(self) -> None:
        session = SessionStore()
        session["user"] = "alice"
        session.create()
        in_flight = SessionStore(session.session_key)
        in_flight.load()
        SessionStore(session.session_key).flush()
        in_flight["late"] = True
        with self.assertRaises(UpdateError):
            in_flight.save()
        self.assertFalse(SessionStore().exists(session.session_key))  # type: ignore[arg-type]

    def test_cycle_key_keeps_the_data_and_retires_the_old_key(self) -> None:
        session = SessionStore()
        session["a"] = 1
        session.create()
        old = session.session_key
        session.cycle_key()
        self.assertNotEqual(session.session_key, old)
        self.assertEqual(SessionStore(session.session_key).load(), {"a": 1})
        self.assertEqual(SessionStore(old).load(), {})

    def test_the_test_clients_login_session_and_logout(self) -> None:
        User.objects.create_user("alice", password="wonderland")
        client = Client()
        self.assertTrue(client.login(username="alice", password="wonderland"))
        self.assertEqual(client.get("/count").content, b"1")
        self.assertEqual(client.get("/count").content, b"2")
        self.assertIn("_auth_user_id", client.session)
        client.logout()
        self.assertEqual(client.get("/read").json(), {})


class SwitchingFromDjangosDbEngine(TransactionTestCase):
    """docs/django.md's switch: the db engine's logged-in users stay logged in."""

    def test_a_login_made_under_the_db_engine_is_adopted_into_django_store(self) -> None:
        user = User.objects.create_user("carol", password="wonderland")
        with self.settings(SESSION_ENGINE="django.contrib.sessions.backends.db"):
            before = Client()
            before.force_login(user)
            old_key = before.cookies["sessionid"].value
        with self.settings(WSGI_SESSION_MIGRATE_FROM="django.contrib.sessions.backends.db"):
            after = Client()
            after.cookies["sessionid"] = old_key
            data = after.get("/read").json()
            self.assertEqual(data.get("_auth_user_id"), str(user.pk))
            self.assertNotEqual(after.cookies["sessionid"].value, old_key)  # a new id
            self.assertEqual(after.get("/count").content, b"1")
        self.assertGreaterEqual(rows(), 1)  # kept in wsgi_session_record now


class UnderAtomicRequests(TransactionTestCase):
    """Each view runs in a transaction (ATOMIC_REQUESTS): its session writes are not part of it."""

    def test_a_session_saved_before_the_view_failed_is_kept(self) -> None:
        client = Client(raise_request_exception=False)
        self.assertEqual(client.get("/save-then-fail").status_code, 500)
        found = SessionStore(views.seen["key"]).load()
        if SEPARATE_CONNECTION:
            self.assertEqual(found, {"saved": "before the failure"})
        else:  # SQLite: on Django's connection, in the view's transaction, rolled back with it
            self.assertEqual(found, {})

    def test_another_requests_save_does_not_wait_for_the_views_transaction(self) -> None:
        client = Client()
        client.get("/count")
        self.assertEqual(client.get("/save-while-another-saves").status_code, 200)
        thread: Any = views.seen["thread"]
        thread.join(10)
        # SQLite's one writer: the other save waited for the view's transaction to end.
        self.assertEqual(
            views.seen["finished while the view's transaction was open"], SEPARATE_CONNECTION
        )
        self.assertEqual(client.get("/read").json(), {"n": 1, "mine": 1, "theirs": 2})


class ConcurrentRequests(TransactionTestCase):
    """Requests in threads, each on its own connection, racing on one session."""

    def race(self, writers: int, work: Any) -> list[BaseException]:
        errors: list[BaseException] = []

        def run(number: int) -> None:
            try:
                work(number)
            except BaseException as exc:  # reported by the test, not lost in the thread
                errors.append(exc)
            finally:
                connections.close_all()

        threads = [threading.Thread(target=run, args=(n,)) for n in range(writers)]
        for thread in threads:
            thread.start()
        return errors if all(_joined(thread) for thread in threads) else [TimeoutError()]

    def test_fifty_writers_that_loaded_one_version_keep_every_key(self) -> None:
        seed = SessionStore()
        seed["seed"] = 1
        seed.save()
        key = seed.session_key
        loaded = threading.Barrier(WRITERS)

        def write(number: int) -> None:
            session = SessionStore(key)
            session["seed"]  # loaded
            loaded.wait(60)  # every writer holds the same version
            session[f"k{number}"] = number
            session.save()  # all but the first conflict, and merge

        self.assertEqual(self.race(WRITERS, write), [])
        expected = {"seed": 1} | {f"k{n}": n for n in range(WRITERS)}
        self.assertEqual(SessionStore(key).load(), expected)

    def test_a_logout_racing_slow_writers_is_never_undone(self) -> None:
        seed = SessionStore()
        seed["_auth_user_id"] = "1"
        seed.save()
        key = seed.session_key
        loaded, logged_out = (
            threading.Barrier(SLOW_WRITERS + 1),
            threading.Barrier(SLOW_WRITERS + 1),
        )
        refused: list[str] = []

        def write(number: int) -> None:
            session = SessionStore(key)
            session["_auth_user_id"]  # loaded
            loaded.wait(60)
            logged_out.wait(60)
            session[f"w{number}"] = number
            try:
                session.save()
            except UpdateError:
                refused.append(f"w{number}")

        def log_out() -> None:
            try:
                loaded.wait(60)
                SessionStore(key).flush()
                logged_out.wait(60)
            finally:
                connections.close_all()

        logout = threading.Thread(target=log_out)
        logout.start()
        self.assertEqual(self.race(SLOW_WRITERS, write), [])
        logout.join(60)
        self.assertEqual(len(refused), SLOW_WRITERS)
        self.assertFalse(SessionStore().exists(key))  # type: ignore[arg-type]


WRITERS = 50
SLOW_WRITERS = 20


def _joined(thread: threading.Thread) -> bool:
    thread.join(120)
    return not thread.is_alive()

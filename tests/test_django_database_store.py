"""``WSGI_SESSION_STORE = "django://default"`` on PostgreSQL, MariaDB and SQLite.

Django can be set up once a process, and the runner's test databases are what
is tested here, so each database gets its own run of Django's test runner
(``manage.py test``) over the project in ``django_db_project/``; its tests
are in ``dbtests/tests.py``. The servers are real, started by the fixtures.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from database_servers import MARIADB_USER, PG_PASSWORD, PG_USER, MariaDBServer, PostgresServer

TESTS = Path(__file__).resolve().parent
PROJECT = TESTS / "django_db_project"
RUN_TIMEOUT = 600


def django_admin(*args: str, files: Path, **database: str) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(PROJECT), str(TESTS)]),
        "DJANGO_SETTINGS_MODULE": "dbproject.settings",
        "DBTEST_FILES": str(files),
        **database,
    }
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=PROJECT,
        env=env,
        capture_output=True,
        text=True,
        timeout=RUN_TIMEOUT,
        check=False,
    )


@pytest.fixture(params=["postgresql", "mysql", "sqlite3"], ids=["postgres", "mariadb", "sqlite"])
def database(request: pytest.FixtureRequest) -> dict[str, str]:
    if request.param == "postgresql":
        server: PostgresServer | MariaDBServer = request.getfixturevalue("shared_postgres")
        return {
            "DBTEST_ENGINE": "postgresql",
            "DBTEST_PORT": str(server.port),
            "DBTEST_USER": PG_USER,
            "DBTEST_PASSWORD": PG_PASSWORD,
        }
    if request.param == "mysql":
        server = request.getfixturevalue("shared_mariadb")
        return {
            "DBTEST_ENGINE": "mysql",
            "DBTEST_PORT": str(server.port),
            "DBTEST_USER": MARIADB_USER,
        }
    return {"DBTEST_ENGINE": "sqlite3"}


def test_djangos_test_runner_on_each_database(database: dict[str, str], tmp_path: Path) -> None:
    done = django_admin("test", "dbtests", "--noinput", "-v", "2", files=tmp_path, **database)
    output = done.stdout + done.stderr
    assert done.returncode == 0, output
    assert "Applying wsgi_session.0001_initial... OK" in output  # the test database got the table
    assert "skipped" not in output
    assert "\nOK\n" in output


@pytest.mark.parametrize("store", ["django://default", "postgresql"])
def test_the_system_check_names_the_setting_when_the_store_is_unreachable(
    store: str, postgres_server: PostgresServer, tmp_path: Path
) -> None:
    postgres_server.kill()
    database = {
        "DBTEST_ENGINE": "postgresql",
        "DBTEST_PORT": str(postgres_server.port),
        "DBTEST_USER": PG_USER,
        "DBTEST_PASSWORD": PG_PASSWORD,
        "DBTEST_STORE": postgres_server.url if store == "postgresql" else store,
    }
    done = django_admin("check", "--database", "default", files=tmp_path, **database)
    output = done.stdout + done.stderr
    assert done.returncode == 1, output
    assert "(wsgi_session.E002) settings.WSGI_SESSION_STORE: " in output
    assert "Connection refused" in output
    assert PG_PASSWORD not in output
    # Without --database, Django's checks reach no database: the URL alone is checked.
    assert django_admin("check", files=tmp_path, **database).returncode == 0

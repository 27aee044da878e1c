"""Fixtures: databases on SQLite (always) and PostgreSQL (when OUTCORE_TEST_PG is set)."""

import gc
import glob
import os
import shutil
import subprocess
import uuid

import pytest
import transaction

import outcore


def _pg_admin_url():
    url = os.environ.get("OUTCORE_TEST_PG", "")
    if url:
        return url
    if os.environ.get("OUTCORE_REQUIRE_PG") == "1":
        pytest.fail("OUTCORE_REQUIRE_PG=1 but OUTCORE_TEST_PG is not set")
    pytest.skip("PostgreSQL test: set OUTCORE_TEST_PG to a server URL (or run ./scripts/test)")


def _psql():
    found = shutil.which("psql") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))), None)
    if found is None:
        pytest.fail("psql (PostgreSQL client) is needed to create test databases")
    return found


def _pg_database():
    """A fresh database on the test server: (url, cleanup)."""
    admin = _pg_admin_url()
    psql = _psql()
    name = f"outcore_py_{os.getpid()}_{uuid.uuid4().hex[:12]}"
    subprocess.run([psql, admin, "-q", "-c", f"CREATE DATABASE {name}"], check=True)
    base, _, _ = admin.rpartition("/")
    url = f"{base}/{name}"

    def drop():
        subprocess.run(
            [psql, admin, "-q", "-c", f"DROP DATABASE IF EXISTS {name} WITH (FORCE)"],
            check=False,
            capture_output=True,
        )

    return url, drop


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path):
    """The URL of a new, empty database on each backend."""
    if request.param == "sqlite":
        yield str(tmp_path / "test.outcore")
    else:
        u, drop = _pg_database()
        yield u
        transaction.abort()  # before the database goes away
        gc.collect()
        drop()


@pytest.fixture
def sqlite_url(tmp_path):
    """The path of a new SQLite database."""
    return str(tmp_path / "test.outcore")


@pytest.fixture
def db(sqlite_url):
    """A new SQLite database."""
    return outcore.open(sqlite_url)


@pytest.fixture
def conn(db):
    """A connection with explicit commits (not joined to a transaction manager)."""
    return db.connect(transaction_manager=False)


@pytest.fixture(autouse=True)
def _fresh_transaction():
    """No transaction of the thread-local manager leaks between tests."""
    transaction.abort()
    yield
    transaction.abort()

"""Fixtures: databases on SQLite (always) and PostgreSQL (when OUTCORE_TEST_PG is set)."""

import gc
import glob
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
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


class PrivateServer:
    """A PostgreSQL server of one test, which the test may stop and start again."""

    def __init__(self, bindir, data, port, user):
        self.bindir, self.data, self.port, self.user = bindir, data, port, user
        self.url = f"postgresql://{user}@127.0.0.1:{port}/postgres?connect_timeout=5"

    def _ctl(self, *args):
        cmd = [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-w", "-t", "60", *args]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        subprocess.run(cmd, check=True, capture_output=True)

    def _start_args(self):
        return ["-l", os.path.join(os.path.dirname(self.data), "server.log"),
                "-o", f"-p {self.port} -k {os.path.dirname(self.data)} -c listen_addresses=127.0.0.1", "start"]

    def start(self):
        self._ctl(*self._start_args())

    def start_later(self, seconds):
        """Starts the server from another process after `seconds` (this process may be blocked
        in a page fault meanwhile, holding the GIL). Returns the process."""
        cmd = [os.path.join(self.bindir, "pg_ctl"), "-D", self.data, "-w", "-t", "60", *self._start_args()]
        if os.getuid() == 0:
            cmd = ["runuser", "-u", "postgres", "--", *cmd]
        return subprocess.Popen(["sh", "-c", f'sleep {seconds} && exec "$@"', "sh", *cmd],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def stop(self):
        self._ctl("-m", "fast", "stop")

    def _processes(self):
        """The postmaster and its children (the server's processes)."""
        with open(os.path.join(self.data, "postmaster.pid")) as f:
            root = int(f.readline())
        pids = [root]
        for entry in os.listdir("/proc"):
            if entry.isdigit():
                try:
                    with open(f"/proc/{entry}/stat") as f:
                        ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                except (OSError, ValueError, IndexError):
                    continue
                if ppid == root:
                    pids.append(int(entry))
        return pids

    def sql(self, query):
        """Runs `query` with psql; its output, stripped."""
        psql = os.path.join(self.bindir, "psql")
        if not os.path.exists(psql):
            psql = shutil.which("psql") or next(iter(sorted(glob.glob("/usr/lib/postgresql/*/bin/psql"))), "psql")
        cmd = [psql, "-h", "127.0.0.1", "-p", str(self.port), "-U", self.user, "-d", "postgres", "-Atc", query]
        return subprocess.run(cmd, check=True, capture_output=True, text=True).stdout.strip()

    def freeze(self):
        """Stops every server process (SIGSTOP): connections stay open, nothing answers."""
        for pid in self._processes():
            os.kill(pid, signal.SIGSTOP)

    def thaw(self):
        for pid in self._processes():
            os.kill(pid, signal.SIGCONT)


@pytest.fixture
def private_pg(tmp_path_factory):
    """A throwaway PostgreSQL server for this test alone (tests that stop and restart it).
    Needs the server binaries (as `scripts/test` installs them); skipped without them unless
    OUTCORE_REQUIRE_PG=1."""
    import socket

    found = shutil.which("pg_ctl") and os.path.dirname(shutil.which("pg_ctl"))
    if not found:
        dirs = sorted(glob.glob("/usr/lib/postgresql/*/bin"), reverse=True)
        found = next((d for d in dirs if os.path.exists(os.path.join(d, "initdb"))), None)
    if not found:
        if os.environ.get("OUTCORE_REQUIRE_PG") == "1":
            pytest.fail("PostgreSQL server binaries (initdb, pg_ctl) are needed")
        pytest.skip("no PostgreSQL server binaries")
    base = tempfile.mkdtemp(prefix="outcore-pg-private-")
    os.chmod(base, 0o755)
    user = "postgres" if os.getuid() == 0 else pwd.getpwuid(os.getuid()).pw_name
    if os.getuid() == 0:
        shutil.chown(base, "postgres")
    data = os.path.join(base, "data")
    init = [os.path.join(found, "initdb"), "-D", data, "-U", user, "--auth=trust", "-E", "UTF8", "--no-sync",
            "--data-checksums"]
    if os.getuid() == 0:
        init = ["runuser", "-u", "postgres", "--", *init]
    subprocess.run(init, check=True, capture_output=True)
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()
    server = PrivateServer(found, data, port, user)
    server.start()
    yield server
    try:
        server.thaw()
    except OSError:
        pass
    try:
        server.stop()
    except subprocess.CalledProcessError:
        pass
    shutil.rmtree(base, ignore_errors=True)

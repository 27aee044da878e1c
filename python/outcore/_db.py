"""`Db` and `Connection`: the Python classes over the extension's objects (as icechunk's
`Repository` wraps its Rust one).

The extension (`outcore._outcore.Db`, `.Connection`) holds the core objects and releases the
GIL around every blocking call; these classes add what is Python's: joining a connection to a
`transaction` manager (`outcore._transaction.DataManager`), `db.transaction()`, the root
`Group`, and the context-manager protocol. Arrays are the extension's `outcore.Array` itself,
so `A[i]` costs no Python-level call.
"""

from __future__ import annotations

import contextlib
from typing import Any, Callable, Optional, TypeVar

from outcore import _outcore
from outcore._group import Group
from outcore._transaction import DataManager, db_transaction


_W = TypeVar("_W", bound="_Wrapper")


def _forward(name: str, doc: str) -> Any:
    """A read-only property with the wrapped extension object's attribute `name`."""
    return property(lambda self: getattr(self._raw, name), doc=doc)


class _Wrapper:
    """What `Db` and `Connection` share: the extension object they wrap (`_raw`), `closed`,
    the context-manager protocol (closing at the end) and the repr."""

    __slots__ = ("_raw",)
    _raw: Any

    def close(self) -> None:
        raise NotImplementedError

    closed = _forward("closed", "True once closed (a connection also when its database was closed).")

    def __enter__(self: _W) -> _W:
        return self

    def __exit__(self, *_args: Any) -> None:
        self.close()

    def __repr__(self) -> str:
        return repr(self._raw)


class Db(_Wrapper):
    """An open database: a versioned store plus the page cache of its arrays (`outcore.open`
    makes one)."""

    __slots__ = ()

    def __init__(self, raw: _outcore.Db) -> None:
        self._raw = raw

    def connect(self, at: Any = None, transaction_manager: Any = None) -> "Connection":
        """A connection. Without `at`: the newest snapshot, read-write, its changes joining the
        transactions of `transaction_manager` (default: the `transaction` package's
        thread-local manager; `False`: none, use `conn.commit()`). With `at` (a tid or a
        datetime): a read-only connection to that historical snapshot."""
        raw = self._raw.connect(at)
        dm = None
        if not raw.read_only and not isinstance(transaction_manager, bool):
            dm = DataManager(raw.txn_handle(), transaction_manager)
            raw.set_data_manager(dm)
        return Connection(raw, self, dm)

    def transaction(self, note: Optional[str] = None) -> contextlib.AbstractContextManager["Connection"]:
        """A context manager: `with db.transaction() as conn:` gives a new connection with its
        own transaction manager; it commits when the block ends normally and aborts on an
        exception."""
        return db_transaction(self, note)

    def history(self, after: int = 0, upto: Optional[int] = None) -> list:
        """Committed transactions, oldest first: dicts with `tid`, `time` (an aware datetime),
        `user`, `description` and `extension`."""
        return self._raw.history(after, upto)

    def check(self, progress: Optional[Callable[[int, int], Any]] = None) -> dict:
        """Verify every stored block of every live array against its checksums (mapped arrays
        are read straight from the page cache, where nothing can be verified on access: this
        is the sweep that does). Returns a dict (`tid`, `arrays`, `blocks`, `bytes`); raises
        `outcore.CorruptError` listing every failure if any block fails. `progress`, if given,
        is called with (blocks done, blocks in all)."""
        return self._raw.check(progress)

    def gc(self, keep_after: Optional[int] = None) -> dict:
        """Remove history no snapshot at or after `keep_after` (default: the newest tid) needs.
        Returns a dict of what was freed (`block_versions`, `array_versions`, `bytes`)."""
        return self._raw.gc(keep_after)

    def close(self) -> None:
        """Closes the database: every connection made from it is closed (uncommitted changes
        discarded; their array handles then raise `outcore.ClosedError`), and `connect()`
        raises `outcore.ClosedError`. Views (ndarrays) taken before stay readable, showing the
        snapshot their connection read. Idempotent; `with outcore.open(...) as db:` calls it."""
        self._raw.close()

    read_only = _forward("read_only", 'True if the database was opened read-only (`mode="r"`).')
    head = _forward("head", "The newest committed tid.")
    location = _forward("location", "Where the database is (path or redacted URL).")


class Connection(_Wrapper):
    """A connection: one snapshot of the database and one transaction over its arrays."""

    __slots__ = ("_db", "_dm", "__weakref__")

    def __init__(self, raw: _outcore.Connection, db: Db, dm: Optional[DataManager] = None) -> None:
        self._raw = raw
        self._db = db
        self._dm = dm

    @property
    def root(self) -> Group:
        """The arrays of this connection by name: the root group (`outcore.Group`, a
        `collections.abc.MutableMapping`)."""
        return Group(self._raw.root, "", self)

    def close(self) -> None:
        """Closes the connection: discards its uncommitted changes (writes through its views
        too) and leaves its transaction manager; its arrays then raise `outcore.ClosedError`.
        Views (ndarrays) taken before stay readable and show the snapshot the connection read;
        writes into them are never committed (a `RuntimeWarning` says so when the last view of
        an array with such writes is released). Idempotent; `with db.connect() as conn:` and
        the end of `with db.transaction() as conn:` call it."""
        if self._dm is not None:
            self._dm._close()
        self._raw.close()

    tid = _forward("tid", "The snapshot (tid) this connection reads.")
    read_only = _forward(
        "read_only",
        'True for a read-only connection: a historical one (`db.connect(at=...)`) or one of a database opened with `mode="r"`.',
    )

    @property
    def db(self) -> Db:
        """The database."""
        return self._db

    @property
    def transaction_manager(self) -> Any:
        """The `transaction` manager this connection's changes join (`None` if not joined to
        one)."""
        return None if self._dm is None else self._dm.transaction_manager

    def commit(self, note: Optional[str] = None, user: Optional[str] = None) -> int:
        """Commits this connection's changes directly (bypassing the `transaction` package)
        with an optional note and user; returns the snapshot the connection then reads."""
        return self._raw.commit(note, user)

    def abort(self) -> None:
        """Discards this connection's changes and moves to the newest snapshot."""
        self._raw.abort()

    def sync(self) -> int:
        """Moves to the newest snapshot (fails with uncommitted changes); returns its tid."""
        return self._raw.sync()

    def has_changes(self) -> bool:
        """True if this transaction has uncommitted changes: data written through views, or
        metadata changes (create, delete, rename, resize, append)."""
        return self._raw.has_changes()

    def open_by_id(self, id: int) -> _outcore.Array:
        """The array with the stable id `id` (`Array.id`), whatever its name now
        (`NoSuchArrayError` if there is none in this connection's view)."""
        return self._raw.open_by_id(id)


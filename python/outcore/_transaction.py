"""Integration with the `transaction` package (the convention of ZODB users).

Every read-write connection has a `DataManager` that joins the current transaction of its
transaction manager as soon as the connection may change data (a view is handed out, an
element assigned, an array created, resized, appended to or deleted), and also at the end of
any transaction in which it still holds uncommitted changes (writes through views kept from an
earlier transaction). So `transaction.commit()`, `transaction.abort()`, `transaction.doom()`,
notes, users and extensions work, and an outcore change commits in the same two-phase commit as
the other resources (a ZODB connection, ...).

Two-phase commit: the core commits in one step, so `tpc_vote` is the store commit (conflicts
are raised there, before any resource finished) and `tpc_finish` has nothing left to do. A
transaction that changed nothing in outcore (views were only read) makes no store commit: the
vote succeeds without touching the store, and `tpc_finish` moves the connection to the newest
snapshot (a failure there is logged, as the transaction already committed). The
data manager's `sortKey` starts with "~" so that it votes after the usual resources (ZODB
storages): once every other resource voted, the outcore commit is the decision point, and when
it fails every other resource is still aborted.

Savepoints: `transaction.savepoint()` copies the dirty data of the connection (memory in
proportion to it) with the transaction's sizes and names; `rollback()` returns to it, any number
of times until the transaction ends.
"""

from __future__ import annotations

import contextlib
import json
import logging
from typing import Any, Iterator, Optional

import transaction
from transaction.interfaces import NoTransaction

log = logging.getLogger("outcore")


class DataManager:
    """Drives an outcore connection from the transactions of `transaction_manager`."""

    def __init__(self, handle: Any, transaction_manager: Optional[Any] = None) -> None:
        self._handle = handle
        if transaction_manager is None:
            transaction_manager = transaction.manager
        self.transaction_manager = transaction_manager
        self._joined_txn: Any = None
        self._voted = False
        self._unchanged = False  # voted with nothing to commit
        transaction_manager.registerSynch(self)

    @property
    def _txn(self) -> Any:
        """The transaction this manager joined (`None` between transactions).

        The connection's arrays call `_join` only while it is `None` (the handle's `joined`
        flag), so that indexing costs no Python call while a transaction is joined."""
        return self._joined_txn

    @_txn.setter
    def _txn(self, txn: Any) -> None:
        self._joined_txn = txn
        self._handle.joined = txn is not None

    def _join(self) -> None:
        """Joins the current transaction (called before anything that may change data).

        Outside a transaction of an explicit manager there is nothing to join: changes made
        then join the next transaction when it ends (see `beforeCompletion`)."""
        try:
            txn = self.transaction_manager.get()
        except NoTransaction:
            return
        if txn is not self._txn:
            txn.join(self)
            self._txn = txn

    def _close(self) -> None:
        """The connection is being closed: stop following its transaction manager."""
        try:
            self.transaction_manager.unregisterSynch(self)
        except KeyError:
            pass

    # IDataManager

    def abort(self, txn: Any) -> None:
        try:
            self._handle.abort()
        finally:
            self._txn = None

    def tpc_begin(self, txn: Any) -> None:
        self._voted = False
        self._unchanged = False

    def commit(self, txn: Any) -> None:
        pass

    def tpc_vote(self, txn: Any) -> None:
        if self._handle.closed:
            # Closed while joined: its changes were discarded. Writes into its views after
            # the close cannot commit: say so now rather than drop them silently.
            if self._handle.has_changes():
                from outcore._errors import ClosedError

                raise ClosedError(
                    f"the connection to {self._handle.location} was closed: writes into its views "
                    "made afterwards cannot be committed"
                )
            self._voted = self._unchanged = True
            return
        if not self._handle.has_changes():
            self._voted = self._unchanged = True
            return
        ext = dict(getattr(txn, "extension", None) or {})
        self._handle.commit(
            txn.user or "",
            txn.description or "",
            json.dumps(ext, default=str) if ext else None,
        )
        self._voted = True

    def tpc_finish(self, txn: Any) -> None:
        if self._unchanged:
            self._sync()
        self._txn = None
        self._voted = self._unchanged = False

    def tpc_abort(self, txn: Any) -> None:
        try:
            if not self._voted:
                self._handle.abort()
        finally:
            self._txn = None
            self._voted = self._unchanged = False

    def savepoint(self) -> "_Savepoint":
        return _Savepoint(self._handle.savepoint())

    def sortKey(self) -> str:
        return f"~outcore:{self._handle.location}:{id(self):x}"

    # ISynchronizer

    def _sync(self) -> bool:
        """Moves a clean connection to the newest snapshot; False if it has changes.

        Changes are detected before the store is asked, so a failure here means the
        connection is clean but its database is unreachable: it is logged, not raised, so one
        broken connection never breaks the transactions of the others sharing its manager
        (its next use raises)."""
        if self._handle.closed:
            return True
        try:
            return bool(self._handle.sync())
        except Exception:
            log.warning("outcore: cannot sync the connection to %s", self._handle.location, exc_info=True)
            return True

    def newTransaction(self, txn: Any) -> None:
        if self._txn is None:
            self._sync()

    def beforeCompletion(self, txn: Any) -> None:
        # Changes made through views kept from an earlier transaction join this one; a clean
        # connection moves to the newest snapshot (a transaction boundary).
        if self._txn is not txn and not self._sync():
            txn.join(self)
            self._txn = txn

    def afterCompletion(self, txn: Any) -> None:
        if self._txn is txn:
            self._txn = None

    def __repr__(self) -> str:
        return f"<outcore.DataManager of {self._handle.location}>"


class _Savepoint:
    """The data manager's part of a `transaction` savepoint."""

    def __init__(self, core: Any) -> None:
        self._core = core

    def rollback(self) -> None:
        self._core.rollback()


@contextlib.contextmanager
def db_transaction(db: Any, note: Optional[str] = None) -> Iterator[Any]:
    """`with db.transaction() as conn:` -- a new connection with its own transaction manager,
    committed when the block ends normally and aborted when it raises; the connection is
    closed at the end either way. Its views stay readable afterwards (showing what the block
    committed), but writes into them can no longer commit: they are discarded, and a
    `RuntimeWarning` says so when the view is released."""
    tm = transaction.TransactionManager()
    conn = db.connect(transaction_manager=tm)
    txn = tm.begin()
    if note:
        txn.note(note)
    try:
        try:
            yield conn
        except BaseException:
            tm.abort()
            raise
        tm.commit()
    finally:
        conn.close()

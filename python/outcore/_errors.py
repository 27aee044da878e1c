"""The exceptions of outcore, one per family of core errors.

Each also subclasses the built-in exception a NumPy or database user would catch, and
`ConflictError` is a `transaction.interfaces.TransientError`, so `transaction` retry loops
(`for attempt in transaction.manager.attempts(): ...`) retry it.
"""

from transaction.interfaces import TransientError


class Error(Exception):
    """Base class of every outcore error."""


class ConflictError(Error, TransientError):
    """The commit collided with a concurrent one; nothing was written. Abort and retry."""


class NeedsAbortError(Error):
    """A commit lost a conflict: abort the transaction before using the connection again."""


class StaleError(NeedsAbortError):
    """The connection could not move to the newest snapshot at its last transaction boundary
    (the store failed after a commit, for example): abort to retry."""


class ClosedError(Error, ValueError):
    """The connection of an array handle, or the database, was closed (a `ValueError`, as
    for operations on closed files)."""


class NoSuchArrayError(Error, KeyError):
    """No array of that name exists."""

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class ArrayGoneError(Error):
    """The array was deleted (or its creation aborted)."""


class AlreadyExistsError(Error, ValueError):
    """An array of that name already exists."""


class ReadOnlyError(Error, ValueError):
    """Changing data through a read-only connection: a historical one, or one of a database
    opened with `mode="r"` (writes into its views raise NumPy's own `ValueError: assignment
    destination is read-only`)."""


class UncommittedError(Error):
    """The operation needs a transaction without uncommitted changes."""


class ShapeError(Error, ValueError):
    """An invalid or mismatching shape."""


class DtypeError(Error, TypeError):
    """An invalid or unsupported dtype."""


class OutOfRangeError(Error, IndexError):
    """An index or byte range outside the array."""


class InvalidArgumentError(Error, ValueError):
    """Any other invalid argument (bad name, bad block size, ...)."""


class StoreError(Error, OSError):
    """The database (SQLite or PostgreSQL) failed."""


class CommitNotWrittenError(StoreError, TransientError):
    """The connection to the server was lost during a commit, and the commit is known not to
    have landed: nothing was written, and the transaction may be retried (a
    `transaction.interfaces.TransientError`, so `transaction` retry loops retry it)."""


class CorruptError(StoreError):
    """A stored block failed its checksum or could not be decoded."""


class SnapshotError(StoreError):
    """A historical snapshot that is not available (garbage collected, or in the future)."""


class NotFoundError(StoreError, FileNotFoundError):
    """No database at that location (`mode="r"` or `"r+"`), or the directory it would be
    created in does not exist."""


class StoreExistsError(StoreError, FileExistsError):
    """A database exists at that location (`mode="w-"`)."""


class PagerError(Error, OSError):
    """The pager (memory mapping, userfaultfd) failed."""


__all__ = [
    "Error",
    "ConflictError",
    "NeedsAbortError",
    "ClosedError",
    "StaleError",
    "NoSuchArrayError",
    "ArrayGoneError",
    "AlreadyExistsError",
    "ReadOnlyError",
    "UncommittedError",
    "ShapeError",
    "DtypeError",
    "OutOfRangeError",
    "InvalidArgumentError",
    "StoreError",
    "CommitNotWrittenError",
    "CorruptError",
    "SnapshotError",
    "NotFoundError",
    "StoreExistsError",
    "PagerError",
]

"""Rust log records to Python's `logging` (see `crates/outcore-py/src/log.rs`).

A daemon thread takes the records the engines queue (it waits inside the extension with the GIL
released) and logs each with `logging.getLogger("outcore.<rust module>")`, e.g.
`outcore.outcore_pager.loader` (all under the `outcore` logger). `OUTCORE_LOG` chooses which records are kept (default `warn`).

At exit the thread is woken and joined (`atexit`): Python ends a daemon thread that is still
inside the extension at finalization with `pthread_exit`, whose forced unwinding through the
extension's frames must not happen (the wheel's extension carries its own unwinder).
"""

import atexit
import logging
import os
import threading

from outcore import _outcore

_lock = threading.Lock()
_thread = None
_stopping = False


def _pump():
    while not _stopping:
        try:
            records = _outcore.next_log_records(1.0)
        except Exception:  # interpreter shutting down
            return
        for level, target, msg in records:
            if level == 0:  # a wake-up
                continue
            name = target if target == "outcore" or target.startswith("outcore.") else f"outcore.{target}"
            logging.getLogger(name).log(level, msg)


def start():
    """Starts the pump thread (once per process; again in a forked child)."""
    global _thread
    with _lock:
        if _thread is None or not _thread.is_alive():
            _thread = threading.Thread(target=_pump, name="outcore-log", daemon=True)
            _thread.start()


@atexit.register
def _stop():
    global _stopping
    _stopping = True
    t = _thread
    if t is not None and t.is_alive():
        _outcore.wake_log_records()
        t.join(5.0)


def _after_fork():
    global _thread
    _thread = None
    start()


start()
os.register_at_fork(after_in_child=_after_fork)

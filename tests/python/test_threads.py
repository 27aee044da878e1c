"""Threads: one connection per thread, connections moving between threads, and the GIL
released during long calls."""

import threading

import numpy as np
import transaction

import outcore


def test_one_connection_per_thread(db):
    setup = db.connect(transaction_manager=False)
    setup.root.create("A", 8 * 4096, np.uint8, blksize=4096)
    setup.commit()
    errors = []

    def work(k):
        try:
            conn = db.connect()  # joined to this thread's transaction manager
            A = conn.root["A"]
            for rep in range(5):
                A[k * 4096:(k + 1) * 4096] = k + rep
                transaction.get().note(f"thread {k} rep {rep}")
                transaction.commit()
        except Exception as e:  # pragma: no cover - reported below
            errors.append(e)

    threads = [threading.Thread(target=work, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    setup.sync()
    A = setup.root["A"]
    for k in range(8):
        assert (A[k * 4096:(k + 1) * 4096] == k + 4).all()
    assert len(db.history()) == 1 + 8 * 5


def test_connection_moves_between_threads(db):
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", 10, np.int32)
    conn.commit()

    def step(v):
        A[:] = v
        conn.commit()

    for v in range(3):
        t = threading.Thread(target=step, args=(v,))
        t.start()
        t.join()
    other = db.connect(transaction_manager=False)
    assert (other.root["A"][:] == 2).all()


def test_commit_releases_the_gil(db):
    conn = db.connect(transaction_manager=False)
    A = conn.root.create("A", 64 << 20, np.uint8)
    A[:] = 7  # 64 MiB to write at commit
    count = [0]
    stop = threading.Event()

    def spin():
        while not stop.is_set():
            count[0] += 1

    t = threading.Thread(target=spin)
    t.start()
    try:
        before = count[0]
        conn.commit()
        during = count[0] - before
    finally:
        stop.set()
        t.join()
    assert during > 1000, f"the other thread ran {during} iterations during the commit"

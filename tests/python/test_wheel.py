"""What the installed extension links and how it ends."""

import shutil
import subprocess
import sys

import pytest

import outcore._outcore as ext

# Daemon threads that keep returning from the extension while the interpreter shuts down: Python
# ends each with pthread_exit, whose forced unwinding goes through the extension's frames.
EXIT_RACE = """
import atexit, threading, time, outcore, outcore._log as L
atexit.unregister(L._stop)
def w():
    while True:
        outcore._outcore.next_log_records(0.001)
for _ in range(4):
    threading.Thread(target=w, daemon=True).start()
time.sleep(0.2)
"""


def test_exit_with_daemon_threads_inside_the_extension():
    for _ in range(5):
        r = subprocess.run([sys.executable, "-c", EXIT_RACE], capture_output=True, text=True, timeout=60)
        assert r.returncode == 0, (r.returncode, r.stderr)


def test_the_extension_needs_only_glibc():
    if shutil.which("ldd") is None:
        pytest.skip("no ldd")
    out = subprocess.run(["ldd", ext.__file__], capture_output=True, text=True, check=True).stdout
    libs = {line.split()[0] for line in out.splitlines() if line.strip()}
    allowed = {"linux-vdso.so.1", "libc.so.6", "libm.so.6", "libpthread.so.0", "libdl.so.2", "librt.so.1",
               "libgcc_s.so.1", "/lib64/ld-linux-x86-64.so.2"}
    assert libs <= allowed, libs - allowed
    assert "ssl" not in out and "crypto" not in out

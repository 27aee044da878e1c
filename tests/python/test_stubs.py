"""The type stubs of the extension module match it, and the package type-checks."""

import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def _mypy(*args):
    pytest.importorskip("mypy")
    return subprocess.run([sys.executable, "-m", *args], cwd=ROOT, capture_output=True, text=True)


def test_stubs_match_the_extension_module():
    r = _mypy("mypy.stubtest", "outcore._outcore")
    assert r.returncode == 0, r.stdout + r.stderr


def test_package_type_checks():
    r = _mypy("mypy")
    assert r.returncode == 0, r.stdout + r.stderr

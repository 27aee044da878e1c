"""The newcomer's example in docs/examples runs and prints what it says (issue 16)."""

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_first_hour_example_runs(tmp_path):
    r = subprocess.run(
        [sys.executable, str(ROOT / "docs" / "examples" / "first_hour.py"), str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    assert "assignment destination is read-only" in out
    assert "read-only database:" in out and "mode 'r'" in out
    assert "history: ['first data', '']" in out
    assert "ocean/sst" in out
    assert "rain: nan [ 0.  0.  0. nan nan] True" in out
    try:
        import xarray  # noqa: F401

        assert "['ocean']" in out
    except ImportError:
        pass
    try:
        import dask  # noqa: F401

        assert "anomaly stored by worker processes" in out
    except ImportError:
        pass

"""The demo runs end to end on a small array."""

import subprocess
import sys


def test_demo_gen_and_read(tmp_path):
    path = str(tmp_path / "demo.outcore")
    r = subprocess.run(
        [sys.executable, "-m", "outcore.demo", "all", "--path", path, "--size", "80", "--cache", "32", "--verify"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    out = r.stdout
    n = 80 * 2**20 // 8
    assert f"shape ({n},), size {n} (80 MiB)" in out
    assert "verify: every value is right" in out
    assert "VIRT" in out and "RSS" in out
    mean = float(out.split("mean ")[1].split(",")[0])
    assert abs(mean) < 1e-3

"""The PEP 517 build backend of outcore: maturin's, with portable Linux wheels by default.

`pip wheel .` (and `pip install .`) build through this module. On Linux, unless the caller gave
its own maturin arguments (`--config-settings build-args=...` or `MATURIN_PEP517_ARGS`), it asks
maturin to link with zig (the `ziglang` package, a build requirement) against glibc 2.28, so the
wheel is tagged `manylinux_2_28` and runs on any distribution from 2018 on, instead of needing the
build machine's glibc. Everything else (stripping, the `wheel` Cargo profile, abi3) is in
`pyproject.toml`'s `[tool.maturin]`.

zig would link its own copy of LLVM's unwinder into the extension, where Rust's std links
libgcc_s. glibc unwinds with libgcc_s when Python ends a thread with `pthread_exit` (a daemon
thread returning from the extension during interpreter shutdown), and libgcc_s then calls the
Rust personality routine, which would call the other unwinder with libgcc_s's context: a
segfault at exit. So the extension is linked against the system's `libgcc_s.so.1` (which
manylinux allows, as every Rust extension built the usual way needs it), and the two agree.
`maturin build --zig --compatibility manylinux_2_28 -- -C link-arg=/path/to/libgcc_s.so.1`
makes the same wheel.
"""

from __future__ import annotations

import glob
import os
import shlex
import subprocess
import sys
from typing import Any, Mapping

import maturin
from maturin import (  # noqa: F401  (re-exported hooks)
    build_editable,
    build_sdist,
    get_requires_for_build_editable,
    get_requires_for_build_sdist,
    get_requires_for_build_wheel,
    prepare_metadata_for_build_editable,
    prepare_metadata_for_build_wheel,
)

#: The oldest glibc the wheel supports (its manylinux tag).
MANYLINUX = "manylinux_2_28"


def _portable(config_settings: Mapping[str, Any] | None) -> Mapping[str, Any] | None:
    given = config_settings or {}
    if not sys.platform.startswith("linux") or os.environ.get("MATURIN_PEP517_ARGS"):
        return config_settings
    if "build-args" in given or "maturin.build-args" in given:
        return config_settings
    try:
        import ziglang
    except ImportError:
        print("outcore: ziglang not installed; building for this machine's glibc", flush=True)
        return config_settings
    zig = os.path.join(os.path.dirname(ziglang.__file__), "zig")
    if os.path.exists(zig):
        os.environ.setdefault("CARGO_ZIGBUILD_ZIG_PATH", zig)
    else:
        os.environ.setdefault("CARGO_ZIGBUILD_PYTHON_PATH", sys.executable)
    args = f"--zig --compatibility {MANYLINUX}"
    gcc_s = _libgcc_s()
    if gcc_s:
        args += f" -- -C link-arg={shlex.quote(gcc_s)}"
    else:
        print("outcore: libgcc_s.so.1 not found; the extension keeps zig's unwinder", flush=True)
    return {**given, "build-args": args}


def _libgcc_s() -> str | None:
    """The path of the system's libgcc_s.so.1."""
    for cc in ("gcc", "cc"):
        try:
            out = subprocess.run([cc, "-print-file-name=libgcc_s.so.1"], capture_output=True, text=True, check=False)
        except OSError:
            continue
        path = out.stdout.strip()
        if os.path.isabs(path) and os.path.exists(path):
            return os.path.realpath(path)
    pats = ["/lib64/libgcc_s.so.1", "/usr/lib64/libgcc_s.so.1", "/lib/*-linux-gnu/libgcc_s.so.1", "/usr/lib/*-linux-gnu/libgcc_s.so.1"]
    for pat in pats:
        found = sorted(glob.glob(pat))
        if found:
            return os.path.realpath(found[0])
    return None


def build_wheel(
    wheel_directory: str,
    config_settings: Mapping[str, Any] | None = None,
    metadata_directory: str | None = None,
) -> str:
    """Build the wheel (PEP 517), portable on Linux (see the module's doc)."""
    return maturin.build_wheel(wheel_directory, _portable(config_settings), metadata_directory)

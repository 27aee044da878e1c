# Python environment for tests and the demo: a venv in .venv with the pip packages, and the
# extension module built by maturin (release mode) into it. Sourced by scripts/test and scripts/demo.

py_setup() {
    local venv="$ROOT/.venv"
    if [ ! -x "$venv/bin/python" ]; then
        echo "== creating venv $venv"
        python3 -m venv "$venv"
    fi
    PY="$venv/bin/python"
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$PY" -m pip install -q --disable-pip-version-check -r "$ROOT/python/requirements-dev.txt"
    (cd "$ROOT" && VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" "$venv/bin/maturin" develop --release --quiet >/dev/null)
}

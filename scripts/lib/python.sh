# Python environment for tests and the demo. Sourced by scripts/test and scripts/demo.
#   py_setup       -> .venv with the build and test tools (maturin, ziglang, pytest, ...); sets PY
#   py_build_wheel -> builds the wheel with `pip wheel .` into target/wheelhouse;
#                     sets WHEEL
#   py_test_venv   -> a fresh venv in target/test-venv with only the wheel and the test tools
#                     installed; sets TPY
#   py_install_wheel -> installs the wheel into .venv (for the demo and for people)

py_setup() {
    local venv="$ROOT/.venv"
    if [ ! -x "$venv/bin/python" ]; then
        echo "== creating venv $venv"
        python3 -m venv "$venv"
    fi
    PY="$venv/bin/python"
    echo "== pip: build and test tools into $venv"
    "$PY" -m pip install -q --disable-pip-version-check --upgrade pip >/dev/null
    "$PY" -m pip install -q --disable-pip-version-check -r "$ROOT/python/requirements-dev.txt"
}

py_build_wheel() {
    local out="$ROOT/target/wheelhouse" log
    rm -rf "$out"
    mkdir -p "$out"
    log=$(mktemp /tmp/outcore-wheel.XXXXXX.log)
    echo "== pip wheel . (release build of the extension, linked by zig for glibc 2.28; a few minutes)"
    local t0=$SECONDS
    # The build prints one line per crate compiled, so a slow build shows it is moving. It runs
    # with .venv's maturin and ziglang (no build isolation): the same paths from run to run, so
    # cargo rebuilds only what changed.
    (cd "$ROOT" && exec "$PY" -m pip wheel -v --no-build-isolation --no-deps --disable-pip-version-check -w "$out" . >"$log" 2>&1) &
    local pid=$! shown=0 n
    while kill -0 "$pid" 2>/dev/null; do
        sleep 5
        n=$(grep -c "Compiling " "$log" || true)
        if [ "$n" != "$shown" ]; then
            echo "   ... $n crates compiled ($((SECONDS - t0)) s)"
            shown=$n
        fi
    done
    if ! wait "$pid"; then
        tail -n 60 "$log"
        echo "!! pip wheel failed (full log: $log)"
        return 1
    fi
    WHEEL=$(ls "$out"/outcore-*.whl)
    echo "== built $(basename "$WHEEL") ($(du -h "$WHEEL" | cut -f1), $((SECONDS - t0)) s)"
    rm -f "$log"
}

py_test_venv() {
    local venv="$ROOT/target/test-venv"
    rm -rf "$venv"
    python3 -m venv "$venv"
    TPY="$venv/bin/python"
    echo "== fresh venv $venv: the wheel and the test tools only"
    "$TPY" -m pip install -q --disable-pip-version-check "$WHEEL" -r "$ROOT/python/requirements-test.txt"
    # The tests must import the installed package, not the source tree.
    (cd "$ROOT" && "$TPY" -c 'import outcore, sys; f = outcore.__file__; print("   outcore from", f); sys.exit("site-packages" not in f)')
}

py_install_wheel() {
    "$PY" -m pip install -q --disable-pip-version-check --force-reinstall --no-deps "$WHEEL"
}

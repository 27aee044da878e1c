import textwrap

import outcore


def test_version_is_the_crate_version():
    assert outcore.__version__ == "0.1.0"


def test_package_example_runs(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    example = outcore.__doc__.split("\n\n", 1)[1]
    exec(compile(textwrap.dedent(example), "outcore.__doc__", "exec"), {})
    conn = outcore.open("data.outcore").connect(transaction_manager=False)
    A = conn.root["A"]
    assert A.shape == (1010, 3)
    assert A[999, 0] == 999 and A[1005, 2] == 1


def test_public_names_exist():
    for name in outcore.__all__:
        assert hasattr(outcore, name), name

import outcore


def test_version_is_the_crate_version():
    assert outcore.__version__ == "0.1.0"

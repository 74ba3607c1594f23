import pytest

from tests import needs


def test_a_missing_program_skips_locally_and_fails_in_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "")
    with pytest.raises(pytest.skip.Exception, match="no-such-program-x is not installed"):
        needs.program("no-such-program-x", "apt-get install nothing")
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match="CI must have it"):
        needs.program("/no/such/path", "apt-get install nothing")
    with pytest.raises(pytest.fail.Exception, match="no_such_module_x"):
        needs.module("no_such_module_x", "pip install nothing")


def test_what_is_there_is_returned() -> None:
    assert needs.program("sh", "it is POSIX").endswith("sh")
    assert needs.module("json", "stdlib").__name__ == "json"

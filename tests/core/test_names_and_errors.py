import pytest

from loopml.core.errors import (
    ConfigError,
    ConflictError,
    InvalidInputError,
    LoopmlError,
    NotFoundError,
    StoreError,
    error_codes,
)
from loopml.core.names import Ref, check_alias, check_name, check_relative_path, parse_ref


@pytest.mark.parametrize("bad", ["ok\n", "", "-x", "a b", "a/b", "\ud800", "x" * 251, 3, None])
def test_bad_names_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError):
        check_name(bad)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        "/etc/passwd",
        "../x",
        "a/../../x",
        "a//b",
        "./a",
        "a\\b",
        "a\x00b",
        "a\ud800",
        "x" * 1001,
        3,
    ],
)
def test_paths_that_could_leave_their_folder_are_refused(bad: object) -> None:
    with pytest.raises(InvalidInputError, match="plain relative path"):
        check_relative_path(bad, "artifact path")


@pytest.mark.parametrize("good", ["a", "model/MLmodel", "dir/sub/file.parquet", "é/ü.txt"])
def test_plain_relative_paths_pass(good: str) -> None:
    assert check_relative_path(good, "artifact path") == good


@pytest.mark.parametrize("bad", ["latest", "champ\n", "1st", "a.b", ""])
def test_bad_aliases_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        check_alias(bad)


@pytest.mark.parametrize(
    ("text", "ref"),
    [
        ("m", Ref("m")),
        ("m:latest", Ref("m")),
        ("m:12", Ref("m", version=12)),
        ("m@champion", Ref("m", alias="champion")),
    ],
)
def test_refs_parse(text: str, ref: Ref) -> None:
    assert parse_ref(text) == ref
    assert str(parse_ref(str(ref))) == str(ref)


@pytest.mark.parametrize("bad", ["m:²", "m:0", "m:-1", "m:1.5", "m@", "m@a@b", "m:3\n", "@a", ":3"])
def test_bad_refs_are_refused(bad: str) -> None:
    with pytest.raises(InvalidInputError):
        parse_ref(bad)


def test_alias_refused_where_only_versions_make_sense() -> None:
    with pytest.raises(InvalidInputError, match="'name' or 'name:3'"):
        parse_ref("flights@prod", allow_alias=False)


class _Custom(NotFoundError):
    http_status = 410


def test_error_codes_walk_the_mro() -> None:
    assert error_codes(InvalidInputError("x")).http_status == 400
    assert error_codes(InvalidInputError("x")).exit_code == 2
    assert error_codes(NotFoundError("x")).grpc_code == "NOT_FOUND"
    assert error_codes(ConflictError("x")).http_status == 409
    assert error_codes(StoreError("x")).http_status == 503
    assert error_codes(ConfigError("x")).exit_code == 2
    assert error_codes(LoopmlError("x")).exit_code == 1
    # a subclass that overrides one code keeps its parent's others
    codes = error_codes(_Custom("gone"))
    assert (codes.http_status, codes.grpc_code, codes.exit_code) == (410, "NOT_FOUND", 1)
    assert error_codes(RuntimeError("bug")).http_status == 500
    assert error_codes(RuntimeError("bug")).grpc_code == "INTERNAL"

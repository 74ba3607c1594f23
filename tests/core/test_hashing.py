from __future__ import annotations

import io
from pathlib import Path

import blake3
import pytest

from loopml.core import hashing
from loopml.core.errors import InvalidInputError


def test_digest_matches_reference_blake3_and_is_prefixed() -> None:
    data = b"nycflights13" * 1000
    assert hashing.digest_bytes(data) == "b3:" + blake3.blake3(data).hexdigest()


def test_chunked_file_digest_equals_one_shot(tmp_path: Path) -> None:
    data = bytes(range(256)) * 300_000  # several chunks of 16 MiB are not needed to differ
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    digest, size = hashing.digest_file(str(path))
    assert size == len(data)
    assert digest == hashing.digest_bytes(data)


@pytest.mark.parametrize("size", [0, 1, 8192, 8193, 50_000])
def test_mapped_digest_equals_one_shot_across_window_edges(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, size: int
) -> None:
    monkeypatch.setattr(hashing, "MAP_WINDOW", 8192)  # a multiple of the page size
    data = bytes((i * 7919) % 251 for i in range(size))
    path = tmp_path / "f.bin"
    path.write_bytes(data)
    assert hashing.digest_mapped(str(path)) == (hashing.digest_bytes(data), size)


def test_read_chunks_reuses_buffer_but_yields_all_bytes() -> None:
    data = b"x" * 10 + b"y" * 7
    got = b"".join(bytes(c) for c in hashing.read_chunks(io.BytesIO(data), chunk_size=4))
    assert got == data


@pytest.mark.parametrize(
    "bad", ["", "b3:", "md5:" + "0" * 64, "b3:" + "G" * 64, "b3:" + "a" * 63, "b3:" + "A" * 64]
)
def test_malformed_digests_are_rejected_with_a_hint(bad: str) -> None:
    with pytest.raises(InvalidInputError, match="64 lowercase hex"):
        hashing.check_digest(bad)

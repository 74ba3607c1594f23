"""Conformance suite for the artifact store: every backend (local folder, S3) passes it."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path

import pytest

from loopml.core import hashing
from loopml.core.errors import IntegrityError, InvalidInputError, NotFoundError
from loopml.store.artifacts import ArtifactStore


@pytest.fixture(params=["local", pytest.param("s3", marks=pytest.mark.s3)])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[ArtifactStore]:
    if request.param == "local":
        yield ArtifactStore(str(tmp_path / "artifacts"))
    else:
        url, options = request.getfixturevalue("s3_artifacts")
        yield ArtifactStore(url, **options)


def _corrupt(store: ArtifactStore, digest: str, data: bytes) -> None:
    """Overwrite stored bytes behind the store's back, as a disk error or attacker would."""
    with store.fs.open(store.path_of(digest), "wb") as f:
        f.write(data)


def test_bytes_round_trip_and_identical_content_is_stored_once(store: ArtifactStore) -> None:
    a = store.put_bytes(b"hello flights")
    b = store.put_bytes(b"hello flights")
    assert a == b
    assert a.digest == hashing.digest_bytes(b"hello flights")
    assert store.get_bytes(a.digest) == b"hello flights"
    assert list(store.iter_digests()).count(a.digest) == 1


def test_file_round_trip_streams_to_destination(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "model.bin"
    src.write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    blob = store.put_file(src)
    assert blob.size == src.stat().st_size
    dest = tmp_path / "out" / "copy.bin"
    store.get_file(blob.digest, dest)
    assert dest.read_bytes() == src.read_bytes()
    assert Path(store.local_path(blob.digest)).read_bytes() == src.read_bytes()


def test_tree_round_trip_with_nested_files(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "model"
    (src / "sub").mkdir(parents=True)
    (src / "a.txt").write_text("A")
    (src / "sub" / "b.txt").write_text("B")
    (src / "sub" / "dup.txt").write_text("A")
    tree = store.put_tree(src)
    assert [e.path for e in tree.entries] == ["a.txt", "sub/b.txt", "sub/dup.txt"]
    assert tree.entries[0].digest == tree.entries[2].digest  # same content, one blob
    again = store.put_tree(src)
    assert again.digest == tree.digest
    out = tmp_path / "restored"
    store.get_tree_to(tree.digest, out)
    assert (out / "sub" / "b.txt").read_text() == "B"
    assert (out / "sub" / "dup.txt").read_text() == "A"


def test_tampered_blob_is_refused_naming_the_artifact(store: ArtifactStore) -> None:
    blob = store.put_bytes(b"the real model")
    _corrupt(store, blob.digest, b"a different model")
    with pytest.raises(IntegrityError, match=r"delay-model v3"):
        store.get_bytes(blob.digest, what="delay-model v3")
    with pytest.raises(IntegrityError):
        store.verify(blob.digest)


def test_truncated_blob_leaves_no_partial_destination(store: ArtifactStore, tmp_path: Path) -> None:
    data = os.urandom(1024 * 1024)
    blob = store.put_bytes(data)
    _corrupt(store, blob.digest, data[: len(data) // 2])
    dest = tmp_path / "out.bin"
    with pytest.raises(IntegrityError, match="corrupted"):
        store.get_file(blob.digest, dest, what="flights:2 part-0.parquet")
    assert not dest.exists()
    assert not list(tmp_path.glob("out.bin*"))


def test_tree_with_a_tampered_member_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    src = tmp_path / "t"
    src.mkdir()
    (src / "weights.bin").write_bytes(b"w" * 1000)
    tree = store.put_tree(src)
    _corrupt(store, tree.entries[0].digest, b"evil")
    with pytest.raises(IntegrityError, match=r"weights\.bin"):
        store.get_tree_to(tree.digest, tmp_path / "restore", what="model m")


def test_missing_and_malformed_digests_are_clear_errors(store: ArtifactStore) -> None:
    missing = hashing.digest_bytes(b"never stored")
    with pytest.raises(NotFoundError, match="not in the artifact store"):
        store.get_bytes(missing)
    with pytest.raises(InvalidInputError, match="not a loopml digest"):
        store.get_bytes("../../etc/passwd")
    with pytest.raises(NotFoundError):
        store.put_file("/no/such/file")


def test_a_blob_that_is_not_a_manifest_is_not_a_tree(store: ArtifactStore) -> None:
    blob = store.put_bytes(b'{"format": "something else"}')
    with pytest.raises(InvalidInputError, match="not a tree"):
        store.get_tree(blob.digest)


def test_manifest_escaping_its_root_is_refused(store: ArtifactStore, tmp_path: Path) -> None:
    from loopml.store.artifacts import TreeEntry

    payload = store.put_bytes(b"x")
    tree = store.put_manifest([TreeEntry("../../escape.txt", payload.digest, 1)])
    with pytest.raises(IntegrityError, match="outside its root"):
        store.get_tree_to(tree.digest, tmp_path / "dest")
    assert not (tmp_path / "escape.txt").exists()


def test_an_upload_in_pieces_is_stored_only_when_whole_and_matching(
    store: ArtifactStore,
) -> None:
    data = os.urandom(300_000)
    digest = hashing.digest_bytes(data)
    # With no digest named (MLflow's artifact proxy), it is stored under its own.
    upload = store.receive()
    for i in range(0, len(data), 70_000):
        upload.write(data[i : i + 70_000])
    assert store.receive().digest is None
    blob = upload.commit()
    assert (blob.digest, blob.size) == (digest, len(data))
    assert store.get_bytes(digest) == data
    # A named digest that the bytes do not hash to stores nothing.
    other = os.urandom(1000)
    wrong = store.receive(digest)
    wrong.write(other)
    with pytest.raises(InvalidInputError, match="nothing was stored"):
        wrong.commit()
    assert not store.exists(hashing.digest_bytes(other))
    # Nor does an upload abandoned halfway.
    left = store.receive()
    left.write(other)
    left.abort()
    left.abort()  # safe twice
    assert not store.exists(hashing.digest_bytes(other))


def test_local_writes_leave_no_temp_files(tmp_path: Path) -> None:
    store = ArtifactStore(str(tmp_path / "a"))
    for i in range(5):
        store.put_bytes(f"blob {i}".encode())
    src = tmp_path / "f"
    src.write_bytes(b"z" * 100_000)
    store.put_file(src)
    store.put_file(src)
    for done in (True, False):
        upload = store.receive()
        upload.write(b"y" * 1000)
        if done:
            upload.commit()
        else:
            upload.abort()
    assert os.listdir(tmp_path / "a" / "tmp") == []


@pytest.mark.slow
def test_storing_a_2gb_file_keeps_memory_flat(tmp_path: Path) -> None:
    """Peak RSS of a child process storing and verifying a 2 GB file stays far below 2 GB."""
    big = tmp_path / "big.bin"
    with open(big, "wb") as f:  # sparse: costs no disk until stored
        f.truncate(2 * 1024**3)
    # VmHWM, not getrusage's ru_maxrss: Linux carries ru_maxrss over exec, so a child
    # spawned by a big pytest worker would report the worker's memory as its own.
    script = textwrap.dedent(
        f"""
        from loopml.store.artifacts import ArtifactStore
        s = ArtifactStore({str(tmp_path / "store")!r})
        blob = s.put_file({str(big)!r})
        s.verify(blob.digest)
        with open("/proc/self/status") as status:
            hwm_kb = next(int(x.split()[1]) for x in status if x.startswith("VmHWM:"))
        print(blob.size, hwm_kb // 1024)
        """
    )
    out = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr[-3000:]
    size, peak_mb = (int(x) for x in out.stdout.split())
    assert size == 2 * 1024**3
    assert peak_mb < 400, f"peak RSS {peak_mb} MB while storing a 2 GB file"

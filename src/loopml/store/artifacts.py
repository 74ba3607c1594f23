"""Content-addressed artifact store over fsspec.

Blobs live at ``<root>/objects/<2 hex>/<62 hex>``; a tree is a blob holding a JSON
manifest of its files' digests. Writes are complete-or-nothing: locally a temp file in the
store renamed into place, on object stores a single (multipart) upload that only appears
when finished. Reads hash what they return and refuse bytes that do not match.
"""

from __future__ import annotations

import contextlib
import json
import os
import posixpath
import shutil
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import fsspec
from fsspec.core import url_to_fs

from loopml.core import hashing
from loopml.core.errors import IntegrityError, InvalidInputError, NotFoundError, StoreError
from loopml.core.ids import new_id

TREE_FORMAT = "loopml.tree/1"


@dataclass(frozen=True)
class Blob:
    digest: str
    size: int


@dataclass(frozen=True)
class TreeEntry:
    path: str
    digest: str
    size: int


@dataclass(frozen=True)
class Tree:
    digest: str
    entries: tuple[TreeEntry, ...]

    @property
    def size(self) -> int:
        return sum(e.size for e in self.entries)


class ArtifactStore:
    """Immutable blobs and trees addressed by their BLAKE3 digest."""

    def __init__(self, url: str, **storage_options: Any) -> None:
        self.url = url.rstrip("/") or url
        try:
            fs, root = url_to_fs(self.url, **storage_options)
        except (ImportError, ValueError) as exc:
            raise StoreError(f"cannot open artifact store {url!r}: {exc}") from exc
        self.fs: fsspec.AbstractFileSystem = fs
        self.root: str = root.rstrip("/")
        protocol = fs.protocol if isinstance(fs.protocol, str) else fs.protocol[0]
        self.is_local = protocol in ("file", "local")
        if self.is_local:
            os.makedirs(self._objects_dir(), exist_ok=True)
            os.makedirs(self._tmp_dir(), exist_ok=True)

    def __repr__(self) -> str:
        return f"ArtifactStore({self.url!r})"

    # layout -----------------------------------------------------------------
    def _objects_dir(self) -> str:
        return posixpath.join(self.root, "objects")

    def _tmp_dir(self) -> str:
        return posixpath.join(self.root, "tmp")

    def path_of(self, digest: str) -> str:
        hexpart = hashing.check_digest(digest)[len(hashing.PREFIX) :]
        return posixpath.join(self._objects_dir(), hexpart[:2], hexpart[2:])

    # writing ----------------------------------------------------------------
    def exists(self, digest: str) -> bool:
        return bool(self.fs.exists(self.path_of(digest)))

    def put_bytes(self, data: bytes) -> Blob:
        digest = hashing.digest_bytes(data)
        target = self.path_of(digest)
        if not self._reuse(target):
            if self.is_local:
                self._local_commit_bytes(data, target)
            else:
                self.fs.pipe_file(target, data)
        return Blob(digest, len(data))

    def _reuse(self, target: str) -> bool:
        """Whether ``target`` is already stored; it is then marked as just written, so
        that ``loopml gc`` (which spares blobs younger than its grace period) cannot
        remove it before the caller records a reference to it."""
        if self.is_local:
            try:
                os.utime(target)
                return True
            except FileNotFoundError:
                return False
        try:
            modified = _modified(self.fs.info(target))
        except FileNotFoundError:
            return False
        # Object stores cannot touch an object: one older than REFRESH_AFTER is written
        # again, which renews its modification time.
        return modified is not None and time.time() - modified < REFRESH_AFTER

    def put_file(self, path: str | os.PathLike[str]) -> Blob:
        """Store a file, streaming it: memory stays flat whatever the file's size."""
        src = os.fspath(path)
        if not os.path.isfile(src):
            raise NotFoundError(f"no file at {src!r}")
        if self.is_local:
            return self._local_put_file(src)
        digest, size = hashing.digest_file(src)
        target = self.path_of(digest)
        if not self._reuse(target):
            # An object-store upload only becomes visible when it completes.
            self.fs.put_file(src, target)
        return Blob(digest, size)

    def _local_put_file(self, src: str) -> Blob:
        # Copy first (in the kernel: no pass through Python buffers), then hash the copy:
        # the digest then names exactly the bytes stored, even if the source changes
        # meanwhile, and the copy is private to the store, so it can be hashed mapped.
        fd, tmp = tempfile.mkstemp(dir=self._tmp_dir(), prefix="put-")
        os.close(fd)
        try:
            shutil.copyfile(src, tmp)
            digest, size = hashing.digest_mapped(tmp)
            target = self.path_of(digest)
            if self._reuse(target):
                os.unlink(tmp)
            else:
                os.makedirs(os.path.dirname(target), exist_ok=True)
                os.replace(tmp, target)
            return Blob(digest, size)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def _local_commit_bytes(self, data: bytes, target: str) -> None:
        fd, tmp = tempfile.mkstemp(dir=self._tmp_dir(), prefix="put-")
        try:
            with os.fdopen(fd, "wb") as out:
                out.write(data)
            os.makedirs(os.path.dirname(target), exist_ok=True)
            os.replace(tmp, target)
        except BaseException:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
            raise

    def receive(self, digest: str | None = None) -> BlobUpload:
        """A blob that arrives in pieces (an upload): written to a temp file while it is
        hashed, and stored (``commit``) under ``digest`` only if it hashes to it; with no
        ``digest``, under the one it hashes to."""
        return BlobUpload(self, None if digest is None else hashing.check_digest(digest))

    def put_tree(self, directory: str | os.PathLike[str]) -> Tree:
        """Store every file under ``directory`` and a manifest naming them."""
        base = Path(directory)
        if not base.is_dir():
            raise NotFoundError(f"no directory at {os.fspath(directory)!r}")
        entries = []
        for file in sorted(p for p in base.rglob("*") if p.is_file()):
            blob = self.put_file(file)
            entries.append(TreeEntry(file.relative_to(base).as_posix(), blob.digest, blob.size))
        return self.put_manifest(entries)

    def put_manifest(self, entries: list[TreeEntry]) -> Tree:
        manifest = {
            "format": TREE_FORMAT,
            "files": [{"path": e.path, "digest": e.digest, "size": e.size} for e in entries],
        }
        data = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        blob = self.put_bytes(data)
        return Tree(blob.digest, tuple(entries))

    # reading ----------------------------------------------------------------
    def _open_raw(self, digest: str, what: str | None) -> Any:
        try:
            return self.fs.open(self.path_of(digest), "rb")
        except FileNotFoundError:
            raise self._missing(digest, what) from None

    def _missing(self, digest: str, what: str | None) -> NotFoundError:
        return NotFoundError(f"artifact {what or digest} is not in the artifact store {self.url!r}")

    def get_bytes(self, digest: str, *, what: str | None = None) -> bytes:
        with self._open_raw(digest, what) as f:
            data = f.read()
        if hashing.digest_bytes(data) != digest:
            raise self._integrity(digest, what)
        return bytes(data)

    def get_file(
        self, digest: str, dest: str | os.PathLike[str], *, what: str | None = None
    ) -> str:
        """Copy a blob to ``dest``, verifying as it streams; nothing is left on mismatch."""
        dest_s = os.fspath(dest)
        os.makedirs(os.path.dirname(os.path.abspath(dest_s)), exist_ok=True)
        tmp = f"{dest_s}.{new_id()[:8]}.part"
        try:
            h = hashing.Hasher()
            with self._open_raw(digest, what) as f, open(tmp, "wb") as out:
                for chunk in hashing.read_chunks(f):
                    h.update(chunk)
                    out.write(chunk)
            if h.digest() != digest:
                raise self._integrity(digest, what)
            os.replace(tmp, dest_s)
        finally:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(tmp)
        return dest_s

    def local_path(self, digest: str, *, what: str | None = None) -> str:
        """A verified local path to read the blob from.

        A local store hands out its own file after checking it; a remote store downloads
        into a local cache keyed by digest.
        """
        if self.is_local:
            self.verify(digest, what=what)
            return self.path_of(digest)
        cache = os.path.join(tempfile.gettempdir(), "loopml-cache", digest.replace(":", "-"))
        # The cached copy is re-hashed too: it sits on local disk where anything can touch it.
        if not os.path.exists(cache) or hashing.digest_file(cache)[0] != digest:
            self.get_file(digest, cache, what=what)
        return cache

    @contextlib.contextmanager
    def open_verified(self, digest: str, *, what: str | None = None) -> Iterator[Any]:
        path = self.local_path(digest, what=what)
        with open(path, "rb") as f:
            yield f

    def verify(self, digest: str, *, what: str | None = None) -> int:
        """Hash the stored bytes; raise IntegrityError if they no longer match."""
        if self.is_local:
            path = self.path_of(digest)
            try:
                actual, size = hashing.digest_mapped(path)
            except FileNotFoundError:
                raise self._missing(digest, what) from None
        else:
            with self._open_raw(digest, what) as f:
                actual, size = hashing.digest_chunks(hashing.read_chunks(f))
        if actual != digest:
            raise self._integrity(digest, what)
        return size

    def get_tree(self, digest: str, *, what: str | None = None) -> Tree:
        raw = self.get_bytes(digest, what=what)
        try:
            manifest = json.loads(raw)
            if manifest.get("format") != TREE_FORMAT:
                raise ValueError("not a tree manifest")
            entries = tuple(
                TreeEntry(f["path"], hashing.check_digest(f["digest"]), int(f["size"]))
                for f in manifest["files"]
            )
        except (ValueError, KeyError, TypeError) as exc:
            raise InvalidInputError(f"artifact {what or digest} is not a tree: {exc}") from None
        return Tree(digest, entries)

    def get_tree_to(
        self, digest: str, dest: str | os.PathLike[str], *, what: str | None = None
    ) -> Tree:
        tree = self.get_tree(digest, what=what)
        base = Path(dest)
        for entry in tree.entries:
            target = (base / entry.path).resolve()
            if base.resolve() not in target.parents:
                raise IntegrityError(f"tree {what or digest} names a path outside its root")
            self.get_file(entry.digest, target, what=f"{what or digest}/{entry.path}")
        return tree

    def iter_digests(self) -> Iterator[str]:
        objects = self._objects_dir()
        if not self.fs.exists(objects):
            return
        for path in self.fs.find(objects):
            parts = path.rstrip("/").split("/")
            candidate = hashing.PREFIX + parts[-2] + parts[-1]
            if hashing.is_digest(candidate):
                yield candidate

    def iter_blobs(self) -> Iterator[tuple[str, int, float | None]]:
        """(digest, size, modification time) of every stored blob."""
        objects = self._objects_dir()
        if not self.fs.exists(objects):
            return
        for path, info in self.fs.find(objects, detail=True).items():
            parts = path.rstrip("/").split("/")
            candidate = hashing.PREFIX + parts[-2] + parts[-1]
            if hashing.is_digest(candidate):
                yield candidate, int(info.get("size") or 0), _modified(info)

    def modified(self, digest: str) -> float | None:
        """When the blob was last written or reused (epoch seconds); None if absent."""
        try:
            return _modified(self.fs.info(self.path_of(digest)))
        except FileNotFoundError:
            return None

    def stale_temp_files(self, older_than: float) -> list[str]:
        """Leftovers of writes that died midway (local stores), older than the epoch
        time ``older_than``; an interrupted object-store upload leaves nothing visible."""
        if not self.is_local or not os.path.isdir(self._tmp_dir()):
            return []
        out = []
        for entry in os.scandir(self._tmp_dir()):
            with contextlib.suppress(FileNotFoundError):
                if entry.is_file() and entry.stat().st_mtime < older_than:
                    out.append(entry.path)
        return out

    def remove_unused(self, digest: str, unused_before: float) -> bool:
        """Remove the blob unless it was written or reused at or after ``unused_before``
        (epoch seconds); whether it was removed. For ``loopml gc``.

        Locally the blob is first renamed aside, which is atomic: a writer reusing it
        before the rename renewed its time, so it is put back; one reusing it after the
        rename finds it gone and writes it again (see ``_reuse``)."""
        target = self.path_of(digest)
        if not self.is_local:
            modified = self.modified(digest)
            if modified is None or modified >= unused_before:
                return False
            self.delete(digest)
            return True
        aside = posixpath.join(self._tmp_dir(), f"gc-{new_id()}")
        try:
            os.replace(target, aside)
        except FileNotFoundError:
            return False
        if os.stat(aside).st_mtime >= unused_before:
            if os.path.exists(target):  # written again meanwhile: that copy stands
                os.unlink(aside)
            else:
                os.replace(aside, target)
            return False
        os.unlink(aside)
        return True

    def delete(self, digest: str) -> None:
        with contextlib.suppress(FileNotFoundError):
            self.fs.rm_file(self.path_of(digest))

    def check_writable(self) -> None:
        """Round-trip a small probe blob; raise StoreError if that fails."""
        probe = f"loopml doctor probe {new_id()}".encode()
        try:
            blob = self.put_bytes(probe)
            if self.get_bytes(blob.digest) != probe:
                raise StoreError("probe blob read back differently")
            self.delete(blob.digest)
        except OSError as exc:
            raise StoreError(f"artifact store {self.url!r} is not writable: {exc}") from exc

    def _integrity(self, digest: str, what: str | None) -> IntegrityError:
        return IntegrityError(
            f"artifact {what or digest} is corrupted: its stored bytes do not match digest "
            f"{digest}. It was modified or truncated after it was written; restore it from a "
            "backup or re-create it."
        )


REFRESH_AFTER = 600.0  # seconds; see ArtifactStore._reuse


class BlobUpload:
    """A blob being received: ``write`` its pieces, then ``commit`` (or ``abort``).

    The pieces go to a private temp file (in the store's own tmp folder when the store is
    local, so the final rename is atomic; in the system's otherwise, and the object-store
    upload only appears when complete) and are hashed as they come, so memory stays flat
    whatever the size. Nothing is stored unless the whole blob hashes to the digest
    expected (if one was): an aborted, failed or mismatched upload leaves nothing behind."""

    def __init__(self, store: ArtifactStore, digest: str | None) -> None:
        self.store = store
        self.digest = digest
        self._hasher = hashing.Hasher()
        folder = store._tmp_dir() if store.is_local else None
        fd, self._tmp = tempfile.mkstemp(dir=folder, prefix="loopml-upload-")
        self._file = os.fdopen(fd, "wb")
        self._done = False

    @property
    def size(self) -> int:
        return self._hasher.size

    def write(self, data: bytes | bytearray | memoryview) -> None:
        self._hasher.update(data)
        self._file.write(data)

    def commit(self) -> Blob:
        """Store the blob if it hashes to the digest expected; InvalidInputError if not."""
        try:
            self._file.close()
            actual = self._hasher.digest()
            if self.digest is not None and actual != self.digest:
                raise InvalidInputError(
                    f"the uploaded bytes hash to {actual}, not {self.digest}: the upload was "
                    "corrupted or the digest is wrong; nothing was stored"
                )
            target = self.store.path_of(actual)
            if not self.store._reuse(target):
                if self.store.is_local:
                    os.makedirs(os.path.dirname(target), exist_ok=True)
                    os.replace(self._tmp, target)
                else:
                    self.store.fs.put_file(self._tmp, target)
            return Blob(actual, self.size)
        finally:
            self.abort()

    def abort(self) -> None:
        """Drop what was received; safe to call more than once."""
        if self._done:
            return
        self._done = True
        self._file.close()
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self._tmp)


def _modified(info: dict[str, Any]) -> float | None:
    """A modification time in epoch seconds from an fsspec ``info`` mapping."""
    for key in ("mtime", "LastModified", "last_modified", "updated", "created"):
        value = info.get(key)
        if value is None:
            continue
        if isinstance(value, int | float):
            return float(value)
        if hasattr(value, "timestamp"):
            return float(value.timestamp())
        with contextlib.suppress(ValueError):
            return datetime.fromisoformat(str(value).replace("Z", "+00:00")).timestamp()
    return None

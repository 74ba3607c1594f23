"""Adding a 1 GB Parquet file vs `dvc add`; BLAKE3 hashing vs MD5 (what DVC hashes with).

Run: python bench/data/bench_add.py [size_mb]   (dvc runs from the venv of _common.py)
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import tempfile

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
from _common import VENV, machine, row, timed

from loopml.core.hashing import digest_file, digest_mapped
from loopml.data.catalog import Catalog
from loopml.store.workspace import Workspace


def make_file(path: str, size_mb: int) -> None:
    rng = np.random.default_rng(0)
    rows = size_mb * 1024 * 1024 // (8 * 10)
    table = pa.table({f"x{i}": rng.normal(size=rows) for i in range(10)})
    pq.write_table(table, path, compression="none")


def md5_file(path: str) -> str:
    h = hashlib.md5()
    with open(path, "rb") as f:
        while chunk := f.read(16 * 1024 * 1024):
            h.update(chunk)
    return h.hexdigest()


def dvc_add(path: str, repo: str) -> None:
    dvc = os.path.join(VENV, "bin", "dvc")
    subprocess.run([dvc, "add", path], cwd=repo, check=True, capture_output=True)


def main() -> None:
    size_mb = int(sys.argv[1]) if len(sys.argv) > 1 else 1024
    with tempfile.TemporaryDirectory(dir=os.environ.get("BENCH_TMP")) as tmp:
        src = os.path.join(tmp, "data.parquet")
        make_file(src, size_mb)
        size = os.path.getsize(src)
        print(f"{size / 1e9:.2f} GB Parquet file on {machine()}")
        t_md5, _ = timed(lambda: md5_file(src), repeat=2)
        t_b3, _ = timed(lambda: digest_file(src), repeat=2)
        t_b3_mapped, _ = timed(lambda: digest_mapped(src), repeat=2)

        n = 0

        def store_only() -> None:
            # What `add` does to hash and store the file (put_file + manifest).
            nonlocal n
            n += 1
            ws = Workspace(f"sqlite:///{tmp}/s{n}.db", f"{tmp}/s{n}")
            blob = ws.artifacts.put_file(src)
            ws.artifacts.put_manifest([])
            assert blob.size == size

        def full_add() -> None:
            nonlocal n
            n += 1
            ws = Workspace(f"sqlite:///{tmp}/a{n}.db", f"{tmp}/a{n}")
            Catalog(ws).add("big", src)

        # Every timed write starts with no dirty pages (os.sync untimed, dvc's runs too):
        # otherwise one side pays for writing back the file the previous step stored.
        t_store, _ = timed(store_only, repeat=3, before=os.sync)
        t_add, _ = timed(full_add, repeat=1, before=os.sync)

        times = []
        for i in range(2):
            repo = os.path.join(tmp, f"dvc{i}")
            os.makedirs(repo)
            dvc = os.path.join(VENV, "bin", "dvc")
            subprocess.run([dvc, "init", "--no-scm", "-q"], cwd=repo, check=True)
            copy = os.path.join(repo, "data.parquet")
            os.link(src, copy)  # same bytes, no copy time charged to dvc
            subprocess.run([dvc, "config", "core.analytics", "false"], cwd=repo, check=True)
            t, _ = timed(lambda repo=repo: dvc_add("data.parquet", repo), repeat=1, before=os.sync)
            times.append(t)
        t_dvc = min(times)
    mb = size / 1e6
    print()
    row("what", "seconds", "MB/s", "ratio")
    row("---", "---:", "---:", "---")
    row("MD5 (hashlib)", f"{t_md5:.2f}", f"{mb / t_md5:,.0f}", "")
    row(
        "BLAKE3, streamed (loopml, users' files)",
        f"{t_b3:.2f}",
        f"{mb / t_b3:,.0f}",
        f"{t_md5 / t_b3:.1f}x MD5",
    )
    row(
        "BLAKE3, mapped (loopml, the store's copy on add)",
        f"{t_b3_mapped:.2f}",
        f"{mb / t_b3_mapped:,.0f}",
        f"{t_md5 / t_b3_mapped:.1f}x MD5",
    )
    row("`dvc add`", f"{t_dvc:.2f}", f"{mb / t_dvc:,.0f}", "")
    row(
        "loopml hash + store",
        f"{t_store:.2f}",
        f"{mb / t_store:,.0f}",
        f"{t_dvc / t_store:.1f}x faster than dvc add",
    )
    row(
        "loopml add incl. profile + schema",
        f"{t_add:.2f}",
        f"{mb / t_add:,.0f}",
        f"{t_dvc / t_add:.1f}x faster than dvc add",
    )


if __name__ == "__main__":
    main()

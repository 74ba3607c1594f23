"""Uploading a large artifact through the server: loopml's remote client vs MLflow's.

    python bench/server/upload.py               # one 200 MB file
    python bench/server/upload.py --mb 50 --no-doc

loopml: ``loopml server`` (a child process on loopback, SQLite + a folder) and this
process with ``LOOPML_URI`` set calling ``run.log_artifact(FILE)``: the file streams from
disk to ``PUT /blobs/{digest}``, which streams it to a temp file while hashing it.

MLflow: ``mlflow server`` (a child process, SQLite, proxied artifacts in a folder, one
worker) and MLflow's client (``/tmp/mlflow-venv``) calling ``mlflow.log_artifact(FILE)``.

Both files are downloaded back through each server and compared byte for byte before a
figure is printed. Two figures per tool: the wall time of the upload call, and how much
the server's heap grew at its peak (anonymous resident memory, sampled every 5 ms during
the upload, the largest rise over the server's processes). Memory is the claim; time is
context (each times only its ``log_artifact`` call).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import platform
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import httpx
import psutil

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from run import DEFAULT_MLFLOW, free_port, say, settle, stop, wait_ready  # noqa: E402

REPO = HERE.parent.parent

MLFLOW_CLIENT = r"""
import hashlib, json, sys, tempfile, time
import mlflow

url, path = sys.argv[1], sys.argv[2]
mlflow.set_tracking_uri(url)
with mlflow.start_run() as run:
    t0 = time.perf_counter()
    mlflow.log_artifact(path)
    elapsed = time.perf_counter() - t0
back = mlflow.artifacts.download_artifacts(
    run_id=run.info.run_id, artifact_path=path.rsplit("/", 1)[1], dst_path=tempfile.mkdtemp()
)
same = hashlib.sha256(open(back, "rb").read()).hexdigest() == hashlib.sha256(
    open(path, "rb").read()
).hexdigest()
print(json.dumps({"elapsed_s": elapsed, "read_back": same}))
"""


def _tree(pid: int) -> list[psutil.Process]:
    root = psutil.Process(pid)
    return [root, *root.children(recursive=True)]


def _anon(pid: int) -> int:
    """Anonymous resident memory (the heap: not files the process maps or caches)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("RssAnon:"):
                    return int(line.split()[1]) * 1024
    except FileNotFoundError:
        pass
    return 0


class PeakSampler:
    """Samples the anonymous memory of a server's processes every 5 ms from another
    thread; ``growth`` is the largest rise over any one process against its value at
    start. (VmHWM would count the pages of a blob the server maps to hash it, which are
    the file's, not the heap's.)"""

    def __init__(self, pid: int) -> None:
        self.procs = _tree(pid)
        self.start = {p.pid: _anon(p.pid) for p in self.procs}
        self.peak = dict(self.start)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.005):
            for p in self.procs:
                self.peak[p.pid] = max(self.peak[p.pid], _anon(p.pid))

    def __enter__(self) -> PeakSampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()

    @property
    def growth(self) -> int:
        return max(self.peak[p] - self.start[p] for p in self.start)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def loopml_side(url: str, path: Path, server_pid: int) -> tuple[float, int]:
    os.environ["LOOPML_URI"] = url
    import loopml as lm

    with lm.start_run("bench-upload") as warm:  # connection and first-call setup
        warm.log_metric("warm", 0.0)
    with lm.start_run("bench-upload", name="upload") as run, PeakSampler(server_pid) as mem:
        t0 = time.perf_counter()
        record = run.log_artifact(path)
        elapsed = time.perf_counter() - t0
    growth = mem.growth
    h = hashlib.sha256()
    with httpx.stream("GET", f"{url}/api/v1/artifacts/{record.id}/download", timeout=600) as r:
        r.raise_for_status()
        for chunk in r.iter_bytes():
            h.update(chunk)
    if h.hexdigest() != _sha256(path):
        sys.exit("loopml: the file read back differs from the one uploaded")
    return elapsed, growth


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mb", type=int, default=200, help="size of the file, in MiB")
    ap.add_argument("--mlflow-python", default=str(DEFAULT_MLFLOW))
    ap.add_argument("--no-doc", action="store_true", help="print only; do not write docs")
    args = ap.parse_args()
    if not Path(args.mlflow_python).exists():
        sys.exit(
            f"no MLflow Python at {args.mlflow_python}: python -m venv /tmp/mlflow-venv && "
            "/tmp/mlflow-venv/bin/python -m pip install mlflow"
        )
    work = Path(tempfile.mkdtemp(prefix="bench-upload-"))
    path = work / "weights.bin"
    with open(path, "wb") as f:
        for _ in range(args.mb):
            f.write(os.urandom(1 << 20))
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("LOOPML_DB", "LOOPML_ARTIFACTS", "LOOPML_URI", "LOOPML_TOKEN")
    }
    env["LOOPML_HOME"] = str(work / "loopml")

    port = free_port()
    url = f"http://127.0.0.1:{port}"
    say(f"loopml server; run.log_artifact of {args.mb} MiB")
    proc = subprocess.Popen(
        [sys.executable, "-m", "loopml.cli", "server", "--port", str(port)],
        env=env,
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        wait_ready(f"{url}/api/v1/openapi.json", proc, deadline_s=300)
        settle()
        loopml_s, loopml_mem = loopml_side(url, path, proc.pid)
    finally:
        stop(proc)

    port = free_port()
    murl = f"http://127.0.0.1:{port}"
    say(f"mlflow server; mlflow.log_artifact of {args.mb} MiB")
    mlflow_bin = Path(args.mlflow_python).parent / "mlflow"
    proc = subprocess.Popen(
        [
            str(mlflow_bin),
            "server",
            "--backend-store-uri",
            f"sqlite:///{work / 'mlflow.db'}",
            "--artifacts-destination",
            str(work / "mlflow-artifacts"),
            "--host",
            "127.0.0.1",
            "--port",
            str(port),
            "--workers",
            "1",
        ],
        cwd=work,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        # MLflow's server imports and migrates for a long while on a busy machine.
        wait_ready(f"{murl}/health", proc, deadline_s=900)
        settle()
        with PeakSampler(proc.pid) as mem:
            out = subprocess.run(
                [args.mlflow_python, "-c", MLFLOW_CLIENT, murl, str(path)],
                check=True,
                capture_output=True,
                text=True,
            )
        mlflow_mem = mem.growth
    finally:
        stop(proc)
    mlflow = json.loads(out.stdout.strip().splitlines()[-1])
    if not mlflow["read_back"]:
        sys.exit("MLflow: the file read back differs from the one uploaded")

    mib = 2**20
    table = "\n".join(
        [
            "| | loopml (remote client) | MLflow client | ratio |",
            "|---|---|---|---|",
            f"| server's peak heap growth, one {args.mb} MiB artifact | "
            f"{loopml_mem / mib:.1f} MiB | {mlflow_mem / mib:.1f} MiB | "
            f"{mlflow_mem / max(loopml_mem, 1):.1f}x |",
            f"| upload call, wall time | {loopml_s:.2f} s | {mlflow['elapsed_s']:.2f} s | "
            f"{mlflow['elapsed_s'] / loopml_s:.1f}x |",
        ]
    )
    print(table)
    if not args.no_doc:
        doc = REPO / "docs" / "benchmarks-upload.md"
        stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())
        load = os.getloadavg()[0]
        doc.write_text(
            f"# Uploading a {args.mb} MiB artifact through the server: loopml vs MLflow\n\n"
            f"{stamp}; {platform.machine()}, {os.cpu_count()} CPUs, load average {load:.1f}, "
            f"Python {platform.python_version()}; re-run with `python bench/server/upload.py "
            f"--mb {args.mb}`. Both files were read back through their server and compared "
            f"byte for byte. Heap: anonymous resident memory of the server's processes, "
            f"sampled every 5 ms during the upload (mapped file pages are not counted). "
            f"Wall time: the `log_artifact` call alone.\n\n{table}\n"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())

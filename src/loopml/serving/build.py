"""``loopml build``: a container build context plus Kubernetes and KServe manifests.

The context is self-contained: it bundles a one-model workspace (SQLite + artifacts)
holding a verified copy of the model, so the image serves exactly the version that was
built, with no access to the team's stores, and a wheel of the loopml that built it, so
the image runs the same loopml without any package index having it. Other package
versions are pinned to the ones the model was saved with. The container runs ``loopml
serve`` on 0.0.0.0 (inside the pod network); ports 8080 (REST) and 8081 (gRPC).

KServe gets two manifests: one serving the model baked into the image, and, given a
``storage_uri``, one where KServe's storage initializer downloads the bundled workspace
from that URI into ``/mnt/models`` (upload the context's ``workspace/`` folder there), so
one image serves any version.
"""

from __future__ import annotations

import base64
import hashlib
import importlib.metadata
import re
import shutil
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loopml.core.errors import ConflictError, InvalidInputError
from loopml.serving.info import server_version
from loopml.serving.model_source import ModelRef, ModelSource
from loopml.store.workspace import Workspace

HTTP_PORT = 8080
GRPC_PORT = 8081
BUNDLE = "workspace"
WHEELS = "wheels"
# Where KServe's storage initializer puts what storageUri names.
KSERVE_MODEL_DIR = "/mnt/models"
# loopml comes from the wheel in the context; its other dependencies follow from the wheel.
SKIP_PACKAGES = {"python", "loopml"}
# A fixed timestamp inside the wheel: the same loopml gives the same bytes.
_ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)


@dataclass(frozen=True)
class BuildResult:
    directory: Path
    model: str
    image: str
    files: list[Path]


def _k8s_name(text: str) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", text.lower()).strip("-")
    return (name or "model")[:50].strip("-")


def write_build_context(
    workspace: Workspace,
    ref: str,
    out_dir: str | Path,
    *,
    image: str | None = None,
    storage_uri: str | None = None,
) -> BuildResult:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConflictError(f"{out} exists and is not empty; choose a new --output folder")
    if storage_uri is not None and "://" not in storage_uri:
        raise InvalidInputError(
            f"--storage-uri {storage_uri!r} is not a URI KServe can download from; "
            "use e.g. s3://bucket/models/delay-model, gs://... or pvc://..."
        )
    parsed = ModelRef.parse(ref)
    alias = parsed.alias or "serving"
    source = ModelSource(workspace)
    out.mkdir(parents=True, exist_ok=True)
    try:
        bundle = Workspace(
            f"sqlite:///{out / BUNDLE / 'loopml.db'}", str(out / BUNDLE / "artifacts")
        )
        try:
            name, version, _ = source.export(ref, bundle, alias)
        finally:
            bundle.close()
        # The migration lock is for processes sharing a live workspace, not for an image.
        for lock in (out / BUNDLE).glob("*.lock"):
            lock.unlink()
        packages = source.packages(name, version)
        wheel = write_wheel(out / WHEELS)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    served_ref = f"{name}@{alias}"
    slug = _k8s_name(name)
    image = image or f"{slug}:{version}"
    python = ".".join(packages.get("python", "3.11").split(".")[:2])
    files = {
        "Dockerfile": _dockerfile(python, served_ref),
        "requirements.txt": _requirements(packages, wheel.name),
        ".dockerignore": "**/__pycache__\n",
        "k8s/deployment.yaml": _yaml(_deployment(slug, image, name, version)),
        "k8s/service.yaml": _yaml(_service(slug)),
        "kserve/inferenceservice.yaml": _yaml(_inference_service(slug, image, served_ref)),
    }
    if storage_uri is not None:
        files["kserve/inferenceservice-storage-uri.yaml"] = _yaml(
            _inference_service(slug, image, served_ref, storage_uri=storage_uri)
        )
    written = [wheel]
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return BuildResult(out, f"{name}:{version}", image, written)


def _dockerfile(python: str, served_ref: str) -> str:
    cmd = serve_command(served_ref)
    return f"""# Built by `loopml build`: serves {served_ref} from the bundled workspace.
FROM python:{python}-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LOOPML_HOME=/app/{BUNDLE}
WORKDIR /app
COPY requirements.txt .
COPY {WHEELS}/ /app/{WHEELS}/
# loopml itself is the wheel in the context (requirements.txt names it by path).
RUN pip install --no-cache-dir -r requirements.txt
COPY {BUNDLE}/ /app/{BUNDLE}/
RUN useradd --uid 10001 --no-create-home loopml && chown -R loopml /app
USER 10001
EXPOSE {HTTP_PORT} {GRPC_PORT}
HEALTHCHECK CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:{HTTP_PORT}/v2/health/ready')"
# exec form: SIGTERM reaches loopml, which drains requests and flushes the prediction log.
CMD {_json_list(cmd)}
"""


def serve_command(served_ref: str) -> list[str]:
    """The command the image runs (and the manifests pass as args)."""
    ports = ["--port", str(HTTP_PORT), "--grpc-port", str(GRPC_PORT)]
    return ["loopml", "serve", served_ref, "--host", "0.0.0.0", *ports]


def _json_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def _requirements(packages: dict[str, str], wheel_name: str) -> str:
    # A path, not `loopml==X`: pip then never asks an index for loopml (which may not
    # have this version, or may have another project's package under that name).
    lines = [f"./{WHEELS}/{wheel_name}"]
    lines += [f"{k}=={v}" for k, v in sorted(packages.items()) if k not in SKIP_PACKAGES]
    return "\n".join(lines) + "\n"


def write_wheel(folder: Path) -> Path:
    """A wheel of the loopml package that is running, written into ``folder``.

    Built from the imported package's own files and its installed metadata, so it works
    for an editable install or a source checkout as well as for an installed wheel, and
    needs no build backend or network.
    """
    # This file is loopml/serving/build.py: two levels up is the package itself.
    package = Path(__file__).resolve().parents[1]
    version = server_version()
    try:
        dist = importlib.metadata.distribution("loopml")
        metadata = dist.read_text("METADATA") or ""
        entry_points = dist.read_text("entry_points.txt") or ""
    except importlib.metadata.PackageNotFoundError:
        metadata, entry_points = "", ""
    if not metadata:
        metadata = f"Metadata-Version: 2.1\nName: loopml\nVersion: {version}\n"
    if not entry_points:
        entry_points = "[console_scripts]\nloopml = loopml.cli.app:entry\n"
    dist_info = f"loopml-{version}.dist-info"
    members: list[tuple[str, bytes]] = [
        (f"loopml/{path.relative_to(package).as_posix()}", path.read_bytes())
        for path in sorted(package.rglob("*"))
        if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc"
    ]
    members += [
        (f"{dist_info}/METADATA", metadata.encode()),
        (
            f"{dist_info}/WHEEL",
            b"Wheel-Version: 1.0\nGenerator: loopml build\nRoot-Is-Purelib: true\n"
            b"Tag: py3-none-any\n",
        ),
        (f"{dist_info}/entry_points.txt", entry_points.encode()),
    ]
    record = [f"{name},sha256={_digest(data)},{len(data)}" for name, data in members]
    record.append(f"{dist_info}/RECORD,,")
    members.append((f"{dist_info}/RECORD", ("\n".join(record) + "\n").encode()))
    folder.mkdir(parents=True, exist_ok=True)
    target = folder / f"loopml-{version}-py3-none-any.whl"
    with zipfile.ZipFile(target, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members:
            info = zipfile.ZipInfo(name, date_time=_ZIP_EPOCH)
            info.compress_type = zipfile.ZIP_DEFLATED
            info.external_attr = 0o644 << 16
            zf.writestr(info, data)
    return target


def _digest(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _yaml(doc: dict[str, Any]) -> str:
    return yaml.safe_dump(doc, sort_keys=False)


def _probe(path: str) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": HTTP_PORT}, "periodSeconds": 5}


def _ports() -> list[dict[str, Any]]:
    return [
        {"name": "http", "containerPort": HTTP_PORT, "protocol": "TCP"},
        {"name": "grpc", "containerPort": GRPC_PORT, "protocol": "TCP"},
    ]


def _deployment(slug: str, image: str, name: str, version: int) -> dict[str, Any]:
    labels = {"app.kubernetes.io/name": slug, "app.kubernetes.io/managed-by": "loopml"}
    return {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "metadata": {"name": slug, "labels": {**labels, "loopml/model-version": str(version)}},
        "spec": {
            "replicas": 2,
            "selector": {"matchLabels": {"app.kubernetes.io/name": slug}},
            "template": {
                "metadata": {
                    "labels": labels,
                    "annotations": {
                        "prometheus.io/scrape": "true",
                        "prometheus.io/port": str(HTTP_PORT),
                        "prometheus.io/path": "/metrics",
                    },
                },
                "spec": {
                    # Longer than the server's 30 s drain: SIGTERM finishes requests, flushes.
                    "terminationGracePeriodSeconds": 45,
                    "containers": [
                        {
                            "name": "model",
                            "image": image,
                            "ports": _ports(),
                            "readinessProbe": _probe("/v2/health/ready"),
                            "livenessProbe": _probe("/v2/health/live"),
                            "resources": {
                                "requests": {"cpu": "1", "memory": "1Gi"},
                                "limits": {"memory": "2Gi"},
                            },
                            "env": [{"name": "LOOPML_MODEL", "value": name}],
                        }
                    ],
                },
            },
        },
    }


def _service(slug: str) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Service",
        "metadata": {"name": slug},
        "spec": {
            "selector": {"app.kubernetes.io/name": slug},
            "ports": [
                {"name": "http", "port": 80, "targetPort": HTTP_PORT},
                {"name": "grpc", "port": GRPC_PORT, "targetPort": GRPC_PORT},
            ],
        },
    }


def _inference_service(
    slug: str, image: str, served_ref: str, *, storage_uri: str | None = None
) -> dict[str, Any]:
    env = [{"name": "PROTOCOL", "value": "v2"}]
    command = serve_command(served_ref)
    if storage_uri is not None:
        # KServe's storage initializer downloads STORAGE_URI into /mnt/models before the
        # container starts. The server writes its prediction log into the workspace, so
        # it serves a writable copy.
        env.append({"name": "STORAGE_URI", "value": storage_uri})
        command = [
            "sh",
            "-c",
            f"cp -r {KSERVE_MODEL_DIR} /tmp/loopml && LOOPML_HOME=/tmp/loopml exec "
            + " ".join(command),
        ]
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {
            "name": slug,
            # Knative (KServe's serverless mode) routes one port per container; the raw
            # mode exposes REST and gRPC side by side.
            "annotations": {"serving.kserve.io/deploymentMode": "RawDeployment"},
        },
        "spec": {
            "predictor": {
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": image,
                        "command" if storage_uri is not None else "args": command,
                        "ports": [
                            {"name": "http1", "containerPort": HTTP_PORT, "protocol": "TCP"},
                            # "h2c" tells KServe the port speaks cleartext HTTP/2 (gRPC).
                            {"name": "h2c", "containerPort": GRPC_PORT, "protocol": "TCP"},
                        ],
                        "env": env,
                    }
                ]
            }
        },
    }

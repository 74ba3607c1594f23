"""``loopml build``: a container build context plus Kubernetes and KServe manifests.

The context is self-contained: it bundles a one-model workspace (SQLite + artifacts)
holding a verified copy of the model, so the image serves exactly the version that was
built, with no access to the team's stores. Package versions are pinned to the ones the
model was saved with. The container runs ``loopml serve`` on 0.0.0.0 (inside the pod
network); ports 8080 (REST) and 8081 (gRPC).
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from loopml.core.errors import ConflictError
from loopml.serving.info import server_version
from loopml.serving.model_source import ModelRef, ModelSource
from loopml.store.workspace import Workspace

HTTP_PORT = 8080
GRPC_PORT = 8081
BUNDLE = "workspace"
# Installed from PyPI in the image; the rest of loopml's dependencies follow from it.
SKIP_PACKAGES = {"python", "loopml"}


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
    workspace: Workspace, ref: str, out_dir: str | Path, *, image: str | None = None
) -> BuildResult:
    out = Path(out_dir)
    if out.exists() and any(out.iterdir()):
        raise ConflictError(f"{out} exists and is not empty; choose a new --out folder")
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
        packages = source.packages(name, version)
    except BaseException:
        shutil.rmtree(out, ignore_errors=True)
        raise
    served_ref = f"{name}@{alias}"
    slug = _k8s_name(name)
    image = image or f"{slug}:{version}"
    python = ".".join(packages.get("python", "3.11").split(".")[:2])
    files = {
        "Dockerfile": _dockerfile(python, served_ref),
        "requirements.txt": _requirements(packages),
        ".dockerignore": "**/__pycache__\n",
        "k8s/deployment.yaml": _yaml(_deployment(slug, image, name, version)),
        "k8s/service.yaml": _yaml(_service(slug)),
        "kserve/inferenceservice.yaml": _yaml(_inference_service(slug, image, served_ref)),
    }
    written = []
    for rel, text in files.items():
        path = out / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
        written.append(path)
    return BuildResult(out, f"{name}:{version}", image, written)


def _dockerfile(python: str, served_ref: str) -> str:
    cmd = _serve_command(served_ref)
    return f"""# Built by `loopml build`: serves {served_ref} from the bundled workspace.
FROM python:{python}-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1 LOOPML_HOME=/app/{BUNDLE}
WORKDIR /app
COPY requirements.txt .
RUN pip install --no-cache-dir -r requirements.txt
COPY {BUNDLE}/ /app/{BUNDLE}/
RUN useradd --uid 10001 --no-create-home loopml && chown -R loopml /app
USER 10001
EXPOSE {HTTP_PORT} {GRPC_PORT}
HEALTHCHECK CMD python -c "import urllib.request as u; u.urlopen('http://127.0.0.1:{HTTP_PORT}/v2/health/ready')"
# exec form: SIGTERM reaches loopml, which drains requests and flushes the prediction log.
CMD {_json_list(cmd)}
"""


def _serve_command(served_ref: str) -> list[str]:
    ports = ["--port", str(HTTP_PORT), "--grpc-port", str(GRPC_PORT)]
    return ["loopml", "serve", served_ref, "--host", "0.0.0.0", *ports]


def _json_list(items: list[str]) -> str:
    return "[" + ", ".join(f'"{i}"' for i in items) + "]"


def _requirements(packages: dict[str, str]) -> str:
    lines = [f"loopml=={server_version()}"]
    lines += [f"{k}=={v}" for k, v in sorted(packages.items()) if k not in SKIP_PACKAGES]
    return "\n".join(lines) + "\n"


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


def _inference_service(slug: str, image: str, served_ref: str) -> dict[str, Any]:
    return {
        "apiVersion": "serving.kserve.io/v1beta1",
        "kind": "InferenceService",
        "metadata": {"name": slug},
        "spec": {
            "predictor": {
                "containers": [
                    {
                        "name": "kserve-container",
                        "image": image,
                        "args": _serve_command(served_ref),
                        "ports": [{"containerPort": HTTP_PORT, "protocol": "TCP"}],
                        "env": [{"name": "PROTOCOL", "value": "v2"}],
                    }
                ]
            }
        },
    }

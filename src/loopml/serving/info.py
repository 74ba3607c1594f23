"""What the server says about itself (OIP server metadata), for both transports."""

from __future__ import annotations

import importlib.metadata

SERVER_NAME = "loopml"
EXTENSIONS = ["binary_tensor_data", "invocations", "feedback", "metrics"]


def server_version() -> str:
    try:
        return importlib.metadata.version("loopml")
    except importlib.metadata.PackageNotFoundError:
        return "0"

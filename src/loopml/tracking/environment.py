"""What a run ran on: git state, Python, platform and installed packages."""

from __future__ import annotations

import functools
import importlib.metadata
import json
import platform
import subprocess
import sys
from dataclasses import dataclass

from loopml.core import hashing


@dataclass(frozen=True)
class Environment:
    digest: str
    python_version: str
    platform: str
    packages: dict[str, str]


@dataclass(frozen=True)
class GitState:
    commit: str | None
    dirty: bool | None


@functools.cache
def python_environment() -> Environment:
    """Installed packages rarely change within a process, and listing them costs ~50 ms."""
    packages: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name.lower()] = dist.version
    return environment_of(sys.version.split()[0], platform.platform(), packages)


def environment_of(
    python_version: str, platform_name: str, packages: dict[str, str]
) -> Environment:
    """An environment named by the digest of its content (so one a client reports is
    named as the same environment captured here would be)."""
    ordered = dict(sorted(packages.items()))
    payload = json.dumps(
        {"python": python_version, "platform": platform_name, "packages": ordered},
        sort_keys=True,
    )
    return Environment(
        hashing.digest_bytes(payload.encode()), python_version, platform_name, ordered
    )


def git_state(cwd: str | None = None) -> GitState:
    def git(*args: str) -> str | None:
        try:
            out = subprocess.run(
                ["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10, check=True
            )
        except (OSError, subprocess.SubprocessError):
            return None
        return out.stdout

    commit = git("rev-parse", "HEAD")
    if commit is None:
        return GitState(None, None)
    status = git("status", "--porcelain", "--untracked-files=no")
    return GitState(commit.strip(), None if status is None else bool(status.strip()))

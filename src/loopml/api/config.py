"""Where the workspace lives, from environment variables or ``loopml.toml``.

Precedence, highest first: ``LOOPML_DB`` / ``LOOPML_ARTIFACTS``; the ``[workspace]`` table
of the nearest ``loopml.toml`` (this folder or a parent); ``LOOPML_HOME``; ``./.loopml``.
Only the entry points (CLI, server, this fluent layer) read configuration.

Remote mode: ``LOOPML_URI=http://host:port`` (or ``uri`` in ``[workspace]``) names a team
server that the Python API talks to instead of the stores; ``LOOPML_TOKEN`` is its bearer
token. A server ignores both: it serves the stores its own configuration names.
"""

from __future__ import annotations

import getpass
import os
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

from loopml.core.errors import ConfigError, LoopmlError

CONFIG_FILE = "loopml.toml"
DEFAULT_HOME = ".loopml"


@dataclass(frozen=True)
class Settings:
    db_url: str
    artifacts_url: str
    sources: tuple[str, ...]
    uri: str | None = None
    token: str | None = field(default=None, repr=False)

    @property
    def remote(self) -> bool:
        return self.uri is not None


def _find_config(start: Path) -> Path | None:
    for folder in (start, *start.parents):
        candidate = folder / CONFIG_FILE
        if candidate.is_file():
            return candidate
    return None


def _read_config(path: Path) -> dict[str, str]:
    try:
        data = tomllib.loads(path.read_text())
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"cannot read {path}: {exc}") from None
    section = data.get("workspace", {})
    if not isinstance(section, dict):
        raise ConfigError(f"{path}: [workspace] must be a table")
    allowed = {"home", "db", "artifacts", "uri"}
    unknown = set(section) - allowed
    if unknown:
        raise ConfigError(
            f"{path}: unknown key(s) {', '.join(sorted(unknown))} in [workspace]; "
            f"allowed: {', '.join(sorted(allowed))}"
        )
    out = {}
    for key, value in section.items():
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{path}: workspace.{key} must be a non-empty string")
        # Relative local paths mean relative to the file, not to wherever loopml runs.
        if key == "home" or (key == "artifacts" and "://" not in value):
            value = str((path.parent / value).resolve())
        out[key] = value
    return out


def os_user() -> str:
    """Who local writes are recorded as made by: the login name of this process."""
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name: a container running as a bare uid
        return f"uid {os.getuid()}" if hasattr(os, "getuid") else "unknown"


def check_uri(uri: str, source: str) -> str:
    """A server address: ``http(s)://host[:port]`` with nothing after the port but a path."""
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError as exc:
        raise ConfigError(f"{source} {uri!r} is not a URL: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ConfigError(
            f"{source} must be a server address such as http://127.0.0.1:5000, not {uri!r}"
        )
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigError(
            f"{source} {uri!r} must not carry a query, fragment or credentials; "
            "put the token in LOOPML_TOKEN"
        )
    del port
    return uri.rstrip("/")


def resolve(env: Mapping[str, str] | None = None, cwd: str | None = None) -> Settings:
    env = os.environ if env is None else env
    here = Path(cwd or os.getcwd())
    sources: list[str] = []
    file_cfg: dict[str, str] = {}
    cfg_path = _find_config(here)
    if cfg_path is not None:
        file_cfg = _read_config(cfg_path)
        sources.append(str(cfg_path))
    home_value = env.get("LOOPML_HOME") or file_cfg.get("home")
    home = Path(home_value) if home_value else here / DEFAULT_HOME
    if not home.is_absolute():
        home = here / home
    if env.get("LOOPML_HOME"):
        sources.append("LOOPML_HOME")
    db = env.get("LOOPML_DB") or file_cfg.get("db")
    if env.get("LOOPML_DB"):
        sources.append("LOOPML_DB")
    artifacts = env.get("LOOPML_ARTIFACTS") or file_cfg.get("artifacts")
    if env.get("LOOPML_ARTIFACTS"):
        sources.append("LOOPML_ARTIFACTS")
    uri = env.get("LOOPML_URI") or file_cfg.get("uri")
    if env.get("LOOPML_URI"):
        sources.append("LOOPML_URI")
    if uri is not None:
        uri = check_uri(uri, "LOOPML_URI" if env.get("LOOPML_URI") else f"{cfg_path}: uri")
    if not sources:
        sources.append("default")
    return Settings(
        db_url=db or f"sqlite:///{home / 'loopml.db'}",
        artifacts_url=artifacts or str(home / "artifacts"),
        sources=tuple(sources),
        uri=uri,
        token=env.get("LOOPML_TOKEN") or None,
    )


_ON = {"1", "true", "yes", "on"}
_OFF = {"", "0", "false", "no", "off"}


def system_metrics_interval(
    enabled: bool | None, interval: float | None, env: Mapping[str, str] | None = None
) -> float | None:
    """Seconds between system metrics samples for a new run, or None for none.

    ``enabled`` (the ``system_metrics=`` argument) wins over ``LOOPML_SYSTEM_METRICS``;
    ``interval`` over ``LOOPML_SYSTEM_METRICS_INTERVAL``; the default is 10 s.
    """
    from loopml.tracking.system_metrics import DEFAULT_INTERVAL_S, check_interval

    env = os.environ if env is None else env
    if enabled is None:
        raw = env.get("LOOPML_SYSTEM_METRICS", "").strip().lower()
        if raw not in _ON | _OFF:
            raise ConfigError(f"LOOPML_SYSTEM_METRICS is {raw!r}; set it to 1 (on) or 0 (off)")
        enabled = raw in _ON
    elif not isinstance(enabled, bool):
        raise ConfigError(f"system_metrics= takes True or False, not {enabled!r:.60}")
    if not enabled:
        return None
    if interval is not None:
        return check_interval(interval)
    raw_interval = env.get("LOOPML_SYSTEM_METRICS_INTERVAL", "").strip()
    if not raw_interval:
        return DEFAULT_INTERVAL_S
    try:
        return check_interval(float(raw_interval))
    except (ValueError, LoopmlError):
        raise ConfigError(
            f"LOOPML_SYSTEM_METRICS_INTERVAL is {raw_interval!r}; give a number of seconds "
            "(at least 0.05)"
        ) from None

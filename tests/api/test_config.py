from __future__ import annotations

from pathlib import Path

import pytest

from loopml.api import config
from loopml.core.errors import ConfigError


def test_default_is_dot_loopml_in_the_current_folder(tmp_path: Path) -> None:
    s = config.resolve(env={}, cwd=str(tmp_path))
    assert s.db_url == f"sqlite:///{tmp_path / '.loopml' / 'loopml.db'}"
    assert s.artifacts_url == str(tmp_path / ".loopml" / "artifacts")
    assert s.sources == ("default",)


def test_loopml_home(tmp_path: Path) -> None:
    s = config.resolve(env={"LOOPML_HOME": str(tmp_path / "h")}, cwd=str(tmp_path))
    assert s.db_url == f"sqlite:///{tmp_path / 'h' / 'loopml.db'}"
    assert s.artifacts_url == str(tmp_path / "h" / "artifacts")


def test_explicit_urls_win_over_the_file_and_home(tmp_path: Path) -> None:
    (tmp_path / "loopml.toml").write_text(
        '[workspace]\ndb = "sqlite:////from/file.db"\nartifacts = "s3://bucket/from-file"\n'
    )
    env = {"LOOPML_DB": "postgresql://u@h/db", "LOOPML_HOME": str(tmp_path / "h")}
    s = config.resolve(env=env, cwd=str(tmp_path))
    assert s.db_url == "postgresql://u@h/db"
    assert s.artifacts_url == "s3://bucket/from-file"


def test_config_file_is_found_in_a_parent_and_relative_paths_follow_it(tmp_path: Path) -> None:
    (tmp_path / "loopml.toml").write_text('[workspace]\nhome = "ws"\n')
    sub = tmp_path / "a" / "b"
    sub.mkdir(parents=True)
    s = config.resolve(env={}, cwd=str(sub))
    assert s.artifacts_url == str(tmp_path / "ws" / "artifacts")
    assert str(tmp_path / "loopml.toml") in s.sources


@pytest.mark.parametrize(
    "content, message",
    [
        ("[workspace\n", "cannot read"),
        ('[workspace]\ndatabase = "x"\n', "unknown key"),
        ("[workspace]\ndb = 3\n", "must be a non-empty string"),
        ('workspace = "x"\n', "must be a table"),
    ],
)
def test_malformed_config_files(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "loopml.toml").write_text(content)
    with pytest.raises(ConfigError, match=message):
        config.resolve(env={}, cwd=str(tmp_path))

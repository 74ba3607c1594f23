"""What the CLI prints: user text stays literal, broken stores and empty folders are explained,
tables stay readable at 80 columns, help is complete."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import polars as pl
import pytest

import loopml as lm
from loopml.cli.app import build_command, main
from loopml.core.clock import format_ts
from loopml.registry.promotion import PromotionRefusedError
from loopml.store.workspace import Workspace
from tests import needs

HOSTILE = "[/x] [bold]loud[/bold] [link=file:///etc/passwd]x[/link]"


def run_cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    code = main(list(args))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def _tiny_model() -> tuple[object, pl.DataFrame]:
    from sklearn.linear_model import LogisticRegression

    rng = np.random.default_rng(0)
    x = rng.normal(size=(60, 2))
    y = (x[:, 0] > 0).astype(int)
    frame = pl.DataFrame({"a": x[:, 0], "b": x[:, 1]})
    return LogisticRegression().fit(frame.to_pandas(), y), frame.with_columns(target=y)


@pytest.fixture
def hostile_workspace(loopml_home: Path) -> dict[str, str]:
    """Every kind of user text holding Rich markup."""
    ds = lm.datasets.add(
        "hostile", pl.DataFrame({"x": [1, 2, 3]}), description=HOSTILE, tags=["[/x]"]
    )
    with lm.start_run("exp", name="hostile", params={"p": HOSTILE}) as run:
        run.set_tags({"note": HOSTILE})
        run.log_metric("auc", 0.5)
    model, frame = _tiny_model()
    lm.models.register("m", model, frame.drop("target"), description=HOSTILE)
    return {"dataset": ds.ref, "run": run.id}


@pytest.mark.parametrize(
    "args",
    [
        ["data", "ls"],
        ["data", "show", "hostile"],
        ["runs", "show", "RUN"],
        ["runs", "compare", "RUN", "RUN"],
        ["models", "ls", "m"],
        ["models", "show", "m:1"],
    ],
)
def test_user_text_is_printed_literally(
    hostile_workspace: dict[str, str], capsys: pytest.CaptureFixture[str], args: list[str]
) -> None:
    args = [hostile_workspace["run"] if a == "RUN" else a for a in args]
    code, out, err = run_cli(capsys, *args)
    assert code == 0, err
    # The text shows as written (tables may cut it, so look for its first piece).
    assert "[/x]" in out


def test_errors_quoting_user_text_are_not_markup(
    loopml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    lm.start_run("warm-up").end()
    code, _, err = run_cli(capsys, "data", "show", "[/x]")
    assert code == 2 and "'[/x]'" in err and "Traceback" not in err
    code, _, err = run_cli(capsys, "runs", "ls", "--filter", "params.x = '[bold]'")
    assert code == 0


def _corrupt(home: Path) -> None:
    ws = Workspace(f"sqlite:///{home / 'loopml.db'}", str(home / "artifacts"))
    ws.close()
    db = home / "loopml.db"
    data = bytearray(db.read_bytes())
    # Keep SQLite's 100-byte header; scribble over the schema and table pages.
    for i in range(100, min(len(data), 200_000)):
        data[i] = 0x5A
    db.write_bytes(bytes(data))
    for extra in ("loopml.db-wal", "loopml.db-shm"):
        (home / extra).unlink(missing_ok=True)


def _every_command(tmp: Path) -> list[list[str]]:
    table = tmp / "t.parquet"
    pl.DataFrame({"x": [1]}).write_parquet(table)
    labels = tmp / "labels.csv"
    labels.write_text("request_id,label\nr1,1\n")
    return [
        ["doctor"],
        ["migrate"],
        ["demo"],
        ["runs", "ls"],
        ["runs", "show", "abc"],
        ["runs", "compare", "abc", "def"],
        ["data", "add", "d", str(table)],
        ["data", "ls"],
        ["data", "show", "d"],
        ["data", "validate", str(table), "--against", "d"],
        ["data", "diff", "d:1", str(table)],
        ["data", "verify"],
        ["data", "schema", "d"],
        ["models", "ls"],
        ["models", "show", "m"],
        ["models", "promote", "m:1"],
        ["models", "rollback", "m"],
        ["models", "card", "m"],
        ["pipeline", "ls"],
        ["pipeline", "show"],
        ["pipeline", "schedules"],
        ["pipeline", "event", "e"],
        ["scheduler", "--once"],
        ["serve", "m@champion", "--port", "0"],
        ["predict", "m@champion", str(table), "-o", str(tmp / "o.parquet")],
        ["build", "m@champion", "-o", str(tmp / "ctx")],
        ["feedback", str(labels), "-d", "m@champion"],
    ]


def test_every_command_on_a_corrupted_database_says_what_to_do(
    loopml_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    _corrupt(loopml_home)
    for args in _every_command(tmp_path):
        code, out, err = run_cli(capsys, *args)
        assert code == 1, (args, out, err)
        assert "is corrupted" in err and "Restore it from a backup" in err, (args, err)
        assert "Traceback" not in out + err, args


def test_a_file_that_is_not_a_database(
    loopml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    loopml_home.mkdir(parents=True)
    (loopml_home / "loopml.db").write_bytes(b"this is not sqlite " * 100)
    code, out, err = run_cli(capsys, "doctor")
    assert code == 1 and "is corrupted (file is not a database)" in err
    # The table still comes out: the metadata store FAILED, the artifact store checked.
    rows = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert "FAILED" in rows["metadata"] and "ok" in rows["artifacts"]


def test_an_unreachable_postgres_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    needs.module("psycopg", "the test extra installs psycopg")
    import socket

    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("LOOPML_DB", f"postgresql://nobody@127.0.0.1:{port}/db")
    monkeypatch.setenv("LOOPML_ARTIFACTS", str(tmp_path / "a"))
    code, _, err = run_cli(capsys, "runs", "ls")
    assert code == 1
    assert "cannot reach the metadata database" in err and "Traceback" not in err


@pytest.mark.parametrize(
    "args, exit_code",
    [
        (["runs", "ls"], 0),
        (["data", "ls"], 0),
        (["models", "ls"], 0),
        (["pipeline", "ls"], 0),
        (["runs", "show", "abc"], 1),
        (["models", "show", "m"], 1),
        (["data", "show", "d"], 1),
    ],
)
def test_read_only_commands_do_not_create_a_workspace(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    args: list[str],
    exit_code: int,
) -> None:
    for var in ("LOOPML_DB", "LOOPML_ARTIFACTS", "LOOPML_HOME"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.chdir(tmp_path)
    code, _, err = run_cli(capsys, *args)
    assert code == exit_code
    err = " ".join(err.split())
    assert str(tmp_path / ".loopml" / "loopml.db") in err and "does not exist" in err
    assert not (tmp_path / ".loopml").exists()


@pytest.fixture
def many_runs(loopml_home: Path) -> Iterator[None]:
    with lm.start_run("flights", name="top", params={"depth": 4}) as top:
        top.log_metrics({f"metric_{i:02d}": i / 10 for i in range(12)})
        top.log_metric("holdout_auc", 0.71)
    with lm.start_run(
        "flights", name="training.load", tags={"pipeline.run_id": top.id, "pipeline.node": "x"}
    ) as step:
        step.log_metric("rows", 10.0)
    yield


def test_runs_ls_fills_its_page_however_many_step_runs_are_newer(
    loopml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    for i in range(3):
        with lm.start_run("flights", name=f"top-{i}"):
            pass
    # Newer than every top-level run and more than --limit * 20: a search that dropped
    # steps after fetching would come back with an empty page.
    for i in range(45):
        with lm.start_run("flights", name=f"step-{i}", tags={"pipeline.run_id": "p"}):
            pass
    code, out, _ = run_cli(capsys, "runs", "ls", "-n", "2")
    assert code == 0
    assert "2 runs in flights" in out and "top-2" in out and "top-1" in out
    assert "step-" not in out and "top-0" not in out
    code, out, _ = run_cli(capsys, "runs", "ls", "-n", "2", "--all")
    assert "step-44" in out and "top-" not in out
    code, out, _ = run_cli(
        capsys, "runs", "ls", "-a", "-n", "100", "-f", "tags.pipeline.run_id is not null"
    )
    assert "45 runs in flights" in out and "top-" not in out


def test_runs_ls_hides_steps_and_shows_the_metrics_that_fit(
    many_runs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run_cli(capsys, "runs", "ls")
    assert code == 0
    flat = " ".join(out.split())
    assert "training.load" not in out and "pipeline step runs hidden" in flat
    assert "1 run in flights" in out
    assert max(len(line) for line in out.splitlines()) <= 80
    assert "more metrics not shown" in flat
    # The metric sorted or filtered by gets a column even though it sorts last by name.
    code, out, _ = run_cli(capsys, "runs", "ls", "-s", "metrics.holdout_auc desc")
    assert "holdout_auc" in out and "0.71" in out
    code, out, _ = run_cli(capsys, "runs", "ls", "--all")
    assert "training.load" in out and "2 runs" in out, out


def test_tables_at_80_columns_break_no_header_date_or_id(
    many_runs: None, capsys: pytest.CaptureFixture[str]
) -> None:
    run_id = lm.search_runs(limit=1)[0].id
    code, out, _ = run_cli(capsys, "runs", "ls", "--all")
    assert code == 0
    lines = out.splitlines()
    assert all(len(line) <= 80 for line in lines)
    header = next(line for line in lines if "run id" in line)
    for word in ("name", "status", "started", "duration", "holdout_auc"):
        assert word in header
    # Each row holds a whole id prefix and a whole date.
    started = format_ts(lm.get_run(run_id).start_time)[5:16]  # as `runs ls` shows it
    assert any(run_id[:12] in line and started in line for line in lines), out


def test_models_show_and_card_print_every_gate_check(
    loopml_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, frame = _tiny_model()
    lm.models.register("m", model, frame.drop("target"))
    # Labels the model cannot know: its AUC is far below the gate's limit.
    noise = frame.with_columns(target=pl.Series(np.random.default_rng(1).integers(0, 2, 60)))
    gate = lm.models.gate(lm.models.Threshold("roc_auc", min=0.95), target="target")
    with pytest.raises(PromotionRefusedError):
        lm.models.promote("m", 1, alias="champion", gate=gate, data=noise)
    code, out, err = run_cli(capsys, "models", "show", "m:1")
    assert code == 0, err
    assert "gate" in out and "refused" in out and "FAIL" in out and "0.95" in out
    code, out, _ = run_cli(capsys, "models", "card", "m:1")
    assert code == 0
    assert "## Gate checks" in out
    rows = [line for line in out.splitlines() if line.startswith("| ") and "FAIL" in line]
    assert rows and "0.95" in rows[0], out
    assert all(line.endswith("|") for line in rows)  # one line per table row


def test_models_promote_takes_a_reference(
    loopml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    model, frame = _tiny_model()
    lm.models.register("m", model, frame.drop("target"))
    lm.models.register("m", model, frame.drop("target"))
    code, out, err = run_cli(capsys, "models", "promote", "m:1", "-a", "champion")
    assert code == 0, err
    code, out, err = run_cli(capsys, "models", "promote", "m:2", "-a", "challenger")
    assert code == 0, err
    code, out, err = run_cli(capsys, "models", "promote", "m@challenger", "-a", "champion")
    assert code == 0 and "1 -> 2" in out, err
    code, out, err = run_cli(capsys, "models", "rollback", "m@champion")
    assert code == 0 and "2 -> 1" in out, err
    code, out, err = run_cli(capsys, "models", "promote", "m", "2", "-a", "champion")
    assert code == 0 and "1 -> 2" in out, err


def _all_commands(command: object, path: tuple[str, ...] = ()) -> Iterator[tuple[str, object]]:
    subs = getattr(command, "commands", None)
    if subs:
        for name, sub in subs.items():
            yield from _all_commands(sub, (*path, name))
    else:
        yield " ".join(path), command


def test_every_option_has_help_and_usage_has_no_placeholders() -> None:
    import typer._click as click

    root = build_command()
    for name, command in _all_commands(root):
        for param in command.params:  # type: ignore[attr-defined]
            if param.param_type_name == "option":
                assert param.help, f"loopml {name} {param.opts[0]} has no help text"
                assert "-o" not in param.opts or "--output" in param.opts, name
        ctx = click.Context(command, info_name=name)  # type: ignore[arg-type]
        usage = " ".join(command.collect_usage_pieces(ctx))  # type: ignore[attr-defined]
        assert "{" not in usage and "<" not in usage, (name, usage)
    code = main(["--version"])
    assert code == 0


def test_feedback_counts_matches_and_refuses_a_deployment_that_never_served(
    loopml_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    import pyarrow as pa

    from loopml.serving.model_source import Prediction
    from loopml.serving.prediction_log import LogRecord, PredictionLog

    ws = lm.workspace()
    log = PredictionLog(ws, "prod")
    for rid in ("r1", "r2"):
        log.append(
            LogRecord(
                rid,
                time.time(),
                "m",
                1,
                "primary",
                1.0,
                pa.table({"a": [0.5]}),
                Prediction(np.array([1]), None),
            )
        )
    log.close()
    labels = tmp_path / "labels.csv"
    labels.write_text("request_id,label\nr1,1\nr2,0\nnever-answered,1\n")
    code, out, err = run_cli(capsys, "feedback", str(labels), "-d", "prod")
    assert code == 0, err
    out = " ".join(out.split())
    assert "stored 3 labels" in out and "2 matched a logged prediction" in out
    assert "1 did not" in out
    one = tmp_path / "one.json"
    one.write_text(json.dumps([{"request_id": "r1", "label": 1}]))
    code, out, err = run_cli(capsys, "feedback", str(one), "-d", "prod")
    out = " ".join(out.split())
    assert code == 0 and "stored 1 label " in out and "1 matched" in out, err
    code, out, err = run_cli(capsys, "feedback", str(labels), "-d", "staging")
    assert code == 1
    err = " ".join(err.split())
    assert "'staging' has not logged any prediction" in err and "'prod'" in err


def test_data_diff_fills_the_p_value_column(
    loopml_home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    rng = np.random.default_rng(0)
    n = 20_000  # large enough that distances, not tests, give the verdict
    for shift in (0.0, 0.5):
        lm.datasets.add(
            f"d{shift}",
            pl.DataFrame(
                {"x": rng.normal(shift, 1, n), "c": rng.choice(["a", "b", "c"], n).tolist()}
            ),
        )
    code, out, err = run_cli(capsys, "data", "diff", "d0.0:1", "d0.5:1")
    assert code == 0, err
    rows = [line.split() for line in out.splitlines() if line.split()[:1] in (["x"], ["c"])]
    assert len(rows) == 2
    for row in rows:
        # column, kind, method, statistic, p-value, verdict: the p-value is never blank.
        assert len(row) == 6, row
        assert row[4].startswith("(") and row[4].endswith(")"), row

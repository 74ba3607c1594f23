"""Autologging of PyTorch Lightning's ``Trainer.fit`` (``lightning.pytorch``, and the older
``pytorch_lightning`` distribution, whichever is installed; both when both are).

Lightning takes seconds to import, so ``lm.autolog()`` does not import it: the trainer is
patched when the user's code first imports it (:func:`patches.when_imported`).

A fit records the trainer's settings, the optimizer and its learning rate, the module's
and the data module's hyperparameters, and every metric the module logs with
``self.log``, at the step Lightning logs it (a :class:`Logger` added beside the user's own
for the fit, as Lightning's MLflow and TensorBoard loggers receive them). The fitted module
is saved with loopml's PyTorch flavor, its signature taken from the training data when
the training set holds tensors.
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
from collections.abc import Callable, Mapping
from typing import Any

from loopml.api.autolog import patches
from loopml.api.autolog.recording import Recorder, Settings, record_fit

SettingsGetter = Callable[[], Settings | None]

# The module defining Trainer in each distribution, and its package's root.
TRAINER_MODULES = {
    "lightning.pytorch.trainer.trainer": "lightning.pytorch",
    "pytorch_lightning.trainer.trainer": "pytorch_lightning",
}
DISTRIBUTIONS = ("lightning", "pytorch_lightning")
SAMPLE_ROWS = 1000
_TRAINER_SETTINGS = (
    "max_epochs",
    "min_epochs",
    "max_steps",
    "accumulate_grad_batches",
    "gradient_clip_val",
    "check_val_every_n_epoch",
    "precision",
)


def patch(settings: SettingsGetter) -> None:
    for module, root in TRAINER_MODULES.items():
        if importlib.util.find_spec(module.split(".")[0]) is None:
            continue

        def patch_trainer(loaded: Any, root: str = root) -> None:
            patches.patch_function(loaded.Trainer, "fit", _around(settings, root))

        patches.when_imported(module, patch_trainer)


def _around(settings: SettingsGetter, root: str) -> Callable[..., Any]:
    def around(original: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        current = settings()
        try:
            bound = inspect.signature(original).bind(*args, **kwargs)
        except TypeError:
            bound = None  # the call itself is wrong: let Lightning say so
        if current is None or bound is None or "lightning" not in current.libraries:
            return original(*args, **kwargs)
        trainer = bound.arguments["self"]
        model = bound.arguments.get("model")
        added: list[Any] = []

        def before(rec: Recorder) -> None:
            rec.attempt("log params", lambda: rec.log_params(_params(trainer, model, bound)))
            if rec.settings.log_training_metrics:
                logger = _run_logger(root, rec, trainer)
                trainer.loggers = [*trainer.loggers, logger]
                added.append(logger)

        def fit() -> Any:
            try:
                return original(*bound.args, **bound.kwargs)
            finally:
                if added:
                    trainer.loggers = [x for x in trainer.loggers if x is not added[0]]

        def after(rec: Recorder, _: Any) -> None:
            rec.attempt("log the optimizer", lambda: rec.log_params(_optimizer(trainer)))
            rec.attempt("log early stopping", lambda: _early_stopping(rec, trainer))
            X, y = _training_tensors(trainer)
            s = rec.settings
            if s.log_models and model is not None:
                rec.attempt("log the model", lambda: rec.log_model(model, _head(X)))
            if s.log_datasets and X is not None:
                rec.attempt("log the training data", lambda: rec.log_training_data(X, y))

        tags = {
            "autolog.library": "lightning",
            "autolog.estimator": f"{type(model).__module__}.{type(model).__qualname__}",
        }
        return record_fit(current, tags, fit, before, after)

    return around


def _flat(prefix: str, values: Mapping[str, Any], out: dict[str, Any]) -> None:
    for key, value in values.items():
        if isinstance(value, Mapping):
            _flat(f"{prefix}{key}.", value, out)
        else:
            out[f"{prefix}{key}"] = value


def _params(trainer: Any, model: Any, bound: inspect.BoundArguments) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for name in _TRAINER_SETTINGS:
        value = getattr(trainer, name, None)
        if value is not None:
            params[name] = value
    datamodule = bound.arguments.get("datamodule")
    for owner in (datamodule, model):
        hparams = getattr(owner, "hparams", None)
        if isinstance(hparams, Mapping):
            _flat("", hparams, params)
    return params


def _optimizer(trainer: Any) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for i, optimizer in enumerate(getattr(trainer, "optimizers", None) or []):
        prefix = "optimizer" if i == 0 else f"optimizer_{i}"
        params[f"{prefix}_name"] = type(optimizer).__name__
        groups = getattr(optimizer, "param_groups", None) or [{}]
        # A scheduler keeps the starting rate as initial_lr and moves lr.
        lr = groups[0].get("initial_lr", groups[0].get("lr"))
        if lr is not None:
            params[f"{prefix}_lr"] = lr
    return params


def _early_stopping(rec: Recorder, trainer: Any) -> None:
    for callback in getattr(trainer, "callbacks", None) or []:
        if type(callback).__name__ != "EarlyStopping":
            continue
        rec.log_params(
            {
                "early_stopping_monitor": callback.monitor,
                "early_stopping_patience": callback.patience,
                "early_stopping_min_delta": callback.min_delta,
                "early_stopping_mode": callback.mode,
            }
        )
        rec.log_metric("stopped_epoch", callback.stopped_epoch)
        rec.log_metric("early_stopping_best_score", callback.best_score)
        return


def _training_tensors(trainer: Any) -> tuple[Any, Any]:
    """The training set's features and target as arrays, when it holds tensors: a
    ``TensorDataset`` whole, another map-style dataset by its first rows."""
    try:
        dataset = getattr(trainer.train_dataloader, "dataset", None)
    except Exception:  # no training loader (a fit that stopped before it was built)
        return None, None
    if dataset is None:
        return None, None
    tensors = getattr(dataset, "tensors", None)
    if isinstance(tensors, tuple) and tensors:
        x, y = tensors[0], tensors[1] if len(tensors) > 1 else None
    else:
        import torch

        try:
            items = [dataset[i] for i in range(min(len(dataset), SAMPLE_ROWS))]
            firsts = [item[0] if isinstance(item, tuple | list) else item for item in items]
            x, y = torch.stack(firsts), None
        except Exception:  # an iterable dataset, or items that are not tensors
            return None, None
    if getattr(x, "ndim", 0) != 2:
        return None, None  # images, sequences: no table signature
    features = x.detach().cpu().numpy()
    target = None if y is None else y.detach().cpu().numpy()
    return features, target


def _head(X: Any) -> Any:
    return None if X is None else X[:SAMPLE_ROWS]


def _run_logger(root: str, rec: Recorder, trainer: Any) -> Any:
    """A Lightning logger writing each metric it receives into the run."""
    base = importlib.import_module(f"{root}.loggers").Logger
    root_dir = trainer.default_root_dir
    last: dict[str, tuple[int | None, float]] = {}

    class RunLogger(base):  # type: ignore[misc,valid-type]
        # Empty name and version, the trainer's root as directory: when it is the only
        # logger, checkpoints land where they would without one (root/checkpoints).
        @property
        def name(self) -> str:
            return ""

        @property
        def version(self) -> str:
            return ""

        @property
        def save_dir(self) -> str:
            return str(root_dir)

        def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
            """The fit's params are logged from the module itself, before the fit."""

        def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
            for key, value in metrics.items():
                # Lightning adds ``epoch`` to the validation and the training epoch's
                # records alike: one point for each (step, value) is enough.
                if last.get(key) == (step, value):
                    continue
                last[key] = (step, value)
                rec.attempt(
                    f"log the metric {key!r}", functools.partial(rec.log_metric, key, value, step)
                )

    return RunLogger()

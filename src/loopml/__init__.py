"""loopml: the whole production-ML loop in one package.

import loopml as lm
with lm.start_run(experiment="flights", params={"lr": 0.1}) as run:
    run.log_metric("loss", 0.42, step=1)
"""

import sys as _sys

from loopml.api import datasets as datasets
from loopml.api import models as models
from loopml.api import monitoring as monitoring
from loopml.api.autolog import AutologWarning as AutologWarning
from loopml.api.autolog import autolog as autolog
from loopml.api.datasets import DatasetVersion as DatasetVersion
from loopml.api.datasets import drift as drift
from loopml.api.datasets import validate as validate
from loopml.api.fluent import active_run as active_run
from loopml.api.fluent import get_run as get_run
from loopml.api.fluent import metric_history as metric_history
from loopml.api.fluent import search_runs as search_runs
from loopml.api.fluent import start_run as start_run
from loopml.api.fluent import workspace as workspace
from loopml.api.loop import Loop as Loop
from loopml.api.pipelines import Dataset as Dataset
from loopml.api.pipelines import Model as Model
from loopml.api.pipelines import PipelineFailedError as PipelineFailedError
from loopml.api.pipelines import PipelineRun as PipelineRun
from loopml.api.pipelines import fire_event as fire_event
from loopml.api.pipelines import get_pipeline_run as get_pipeline_run
from loopml.api.pipelines import pipeline as pipeline
from loopml.api.pipelines import pipeline_runs as pipeline_runs
from loopml.api.pipelines import reproduce as reproduce
from loopml.api.pipelines import resume_pipeline as resume_pipeline
from loopml.api.pipelines import run_pipeline as run_pipeline
from loopml.api.pipelines import schedule as schedule
from loopml.api.pipelines import step as step
from loopml.core.errors import ConfigError as ConfigError
from loopml.core.errors import ConflictError as ConflictError
from loopml.core.errors import IntegrityError as IntegrityError
from loopml.core.errors import InvalidInputError as InvalidInputError
from loopml.core.errors import LoopmlError as LoopmlError
from loopml.core.errors import NotFoundError as NotFoundError
from loopml.core.errors import StoreError as StoreError
from loopml.store.workspace import Workspace as Workspace
from loopml.tracking.active_run import ActiveRun as ActiveRun
from loopml.tracking.records import MetricHistory as MetricHistory
from loopml.tracking.records import Run as Run
from loopml.tracking.records import RunList as RunList

__version__ = "0.1.0"

# ``import loopml.models`` must give the module ``lm.models`` names, as ``import os.path``
# gives ``os.path``: the API namespaces are registered under their public dotted names, and
# the domain packages live under other names (``loopml.registry``, ``loopml.monitor``).
for _name, _module in (("models", models), ("monitoring", monitoring), ("datasets", datasets)):
    _sys.modules.setdefault(f"{__name__}.{_name}", _module)
del _name, _module

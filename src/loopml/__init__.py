"""loopml: the whole production-ML loop in one package.

import loopml as lm
with lm.start_run(experiment="flights", params={"lr": 0.1}) as run:
    run.log_metric("loss", 0.42, step=1)
"""

from loopml.api import models as models
from loopml.api.fluent import get_run as get_run
from loopml.api.fluent import metric_history as metric_history
from loopml.api.fluent import search_runs as search_runs
from loopml.api.fluent import start_run as start_run
from loopml.api.fluent import workspace as workspace
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

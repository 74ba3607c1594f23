"""MLflow's tracking REST API, served from a loopml workspace.

``mlflow.set_tracking_uri("http://host:port")`` pointed at ``loopml server`` logs ordinary
loopml runs: the MLflow client's experiments, runs, params, tags, metrics and artifacts
land in loopml's stores and show up in ``lm.search_runs``, the CLI and the web UI.
Endpoints loopml does not implement answer in MLflow's error shape, naming the endpoint.
"""

from loopml.server.mlflow.hot import HotPaths as HotPaths
from loopml.server.mlflow.routes import hot as hot
from loopml.server.mlflow.routes import router as router

__all__ = ["HotPaths", "hot", "router"]

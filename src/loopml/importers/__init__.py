"""Bringing runs and models recorded by other tools into a loopml workspace."""

from loopml.importers.mlflow_import import ImportReport as ImportReport
from loopml.importers.mlflow_import import import_mlflow as import_mlflow
from loopml.importers.mlflow_records import MlflowSourceError as MlflowSourceError
from loopml.importers.mlflow_source import open_source as open_source

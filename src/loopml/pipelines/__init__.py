"""Pipelines: typed Python steps wired into a DAG, cached, tracked and run anywhere.

One module a concept: ``types`` (what a step may return), ``step`` and ``definition``
(pure definitions, no data), ``code_version`` and ``cache_key`` (what makes a result
reusable), ``values`` (outputs to artifacts and back), ``cache`` (cache records, apart
from the stored results), ``task`` (one step execution, the unit executors ship),
``executors`` / ``ray_executor`` (where tasks run), ``runner`` (the coordinator that
records runs and lineage), ``records`` (pipeline runs as stored), ``loader`` (importing
``module:pipeline``), ``schedules`` and ``scheduler`` (cron, dataset and event triggers).
Every function that touches storage takes a ``Workspace`` explicitly.
"""

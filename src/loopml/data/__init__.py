"""Data management: versioned datasets, profiles, schemas, validation and drift.

One module a concept: ``catalog`` (add/get/append/search/verify on a Workspace),
``dataset`` (the Dataset object), ``profile``, ``schema``, ``validate``, ``drift`` and
``report`` (HTML). Every function that touches storage takes a ``Workspace`` explicitly;
the fluent ``loopml.api.datasets`` resolves it from configuration.
"""

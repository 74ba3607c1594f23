"""Serving: the Open Inference Protocol over REST and gRPC, MLflow-style ``/invocations``,
adaptive micro-batching, a prediction log, canary and shadow models, and batch scoring.

An entry point like the CLI: it takes a :class:`~loopml.store.workspace.Workspace`
explicitly and never reads configuration. Wire formats (OIP JSON, protobuf) live only in
this package. Nothing here is imported by ``import loopml``: FastAPI, uvicorn and grpc load
only when a server or client is built.
"""

"""The team server: a JSON HTTP API under ``/api/v1/`` and a web UI over one workspace.

``loopml ui`` serves the local workspace on 127.0.0.1; ``loopml server`` serves a team's
(PostgreSQL + S3) with several worker processes and bearer tokens.
"""

from loopml.server.app import create_app as create_app

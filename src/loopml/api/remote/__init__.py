"""Remote mode: the Python API talking to a team server (``LOOPML_URI``) over HTTP.

The fluent layer (``loopml.api.fluent``) picks this package when the configuration names a
server; nothing here reads configuration. The server validates what it is sent with the
same checks local mode runs, so the client checks only what it must answer at once (a
metric logged in the background has no request to fail).
"""

from loopml.api.remote.connection import Connection as Connection
from loopml.api.remote.connection import RemoteAccessError as RemoteAccessError
from loopml.api.remote.datasets import RemoteCatalog as RemoteCatalog
from loopml.api.remote.registry import RemoteRegistry as RemoteRegistry
from loopml.api.remote.tracking import RemoteRun as RemoteRun
from loopml.api.remote.tracking import RemoteTracker as RemoteTracker

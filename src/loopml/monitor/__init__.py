"""Monitoring of served traffic: drift, quality, latency, realised and estimated performance.

``check`` computes one window of a model's (or deployment's) logged predictions against
the training data of the version that answered; ``history`` every window over a range;
``trace`` follows one request back to the data the model was trained on.
"""

from loopml.monitor.api import check as check
from loopml.monitor.api import history as history
from loopml.monitor.trace import Trace as Trace
from loopml.monitor.trace import trace as trace
from loopml.monitor.window import Monitor as Monitor
from loopml.monitor.window import WindowReport as WindowReport

"""Reading the prediction log back lives in monitoring (which serving may import)."""

from loopml.monitor.logs import read_feedback as read_feedback
from loopml.monitor.logs import read_predictions as read_predictions

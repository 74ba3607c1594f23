"""The retraining loop: triggers, retrain through a pipeline, gate, canary, promote,
watch and roll back; every decision stored with its reasons."""

from loopml.retraining.loop import Loop as Loop
from loopml.retraining.loop import TickResult as TickResult
from loopml.retraining.records import Decision as Decision
from loopml.retraining.records import LoopStore as LoopStore
from loopml.retraining.triggers import DriftAbove as DriftAbove
from loopml.retraining.triggers import Every as Every
from loopml.retraining.triggers import Evidence as Evidence
from loopml.retraining.triggers import NewLabels as NewLabels
from loopml.retraining.triggers import PerformanceBelow as PerformanceBelow
from loopml.retraining.triggers import Trigger as Trigger

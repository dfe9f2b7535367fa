"""Monitoring callbacks: FID/KID/IS, mode-collapse diversity, gradient norms and samples; correct under DDP, with
any logger, logged against the generator step."""

from lit_gans.callbacks.base import PeriodicCallback
from lit_gans.callbacks.diversity import DiversityMonitor
from lit_gans.callbacks.features import MNISTClassifier
from lit_gans.callbacks.fid import FIDCallback
from lit_gans.callbacks.gradients import GradientNormMonitor
from lit_gans.callbacks.samples import SampleGrid
from lit_gans.checkpoints import LastCheckpoint

__all__ = [
    "DiversityMonitor",
    "FIDCallback",
    "GradientNormMonitor",
    "LastCheckpoint",
    "MNISTClassifier",
    "PeriodicCallback",
    "SampleGrid",
]

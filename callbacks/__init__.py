"""Monitoring callbacks: FID/KID/IS (also intra-class and in a data classifier's features), mode-collapse
diversity, conditional accuracy and Classification Accuracy Score, gradient norms and samples; correct under DDP,
with any logger, logged against the generator step."""

from lit_gans.callbacks.base import MetricCallback, PeriodicCallback
from lit_gans.callbacks.classifier import DataClassifier, classification_accuracy_score, data_classifier, train_classifier
from lit_gans.callbacks.conditional import ClassificationAccuracyScore, ConditionalAccuracy
from lit_gans.callbacks.diversity import DiversityMonitor
from lit_gans.callbacks.features import MNISTClassifier
from lit_gans.callbacks.fid import FIDCallback
from lit_gans.callbacks.gradients import GradientNormMonitor
from lit_gans.callbacks.samples import SampleGrid
from lit_gans.checkpoints import BestCheckpoint, LastCheckpoint

__all__ = [
    "BestCheckpoint",
    "ClassificationAccuracyScore",
    "ConditionalAccuracy",
    "DataClassifier",
    "DiversityMonitor",
    "FIDCallback",
    "GradientNormMonitor",
    "LastCheckpoint",
    "MNISTClassifier",
    "MetricCallback",
    "PeriodicCallback",
    "SampleGrid",
    "classification_accuracy_score",
    "data_classifier",
    "train_classifier",
]

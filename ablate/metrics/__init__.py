"""Metrics over sets of generated images, as torchmetrics ``Metric``s (usable in training, evaluation
and sweeps alike), and the suite that builds them all for a dataset.

>>> suite = build_suite(DataConfig(name="mnist5k", n=200, image_size=14))   # trains/caches the classifier
>>> suite.score(samples)   # coherence, accuracy, artefact_rate, fid, fidelity, novelty, memorisation_rate
"""
from ablate.metrics.agreement import ELSAgreement, pairwise_agreement
from ablate.metrics.artefacts import (ArtefactRate, FingerDetector, LocationAgreement, StrokeDetector, artefact_locations,
                                     conditional_artefact_rate, detector_for, location_scores, map_iou)
from ablate.metrics.classifier import DigitCNN, ReferenceClassifier, get_classifier, train_classifier
from ablate.metrics.coherence import Coherence, HandCoherence, classifier_fid
from ablate.metrics.realism import Fidelity, Novelty, nearest, nearest_distance
from ablate.metrics.suite import MetricSuite, build_suite

__all__ = ["ELSAgreement", "pairwise_agreement", "Coherence", "HandCoherence", "classifier_fid", "ArtefactRate", "FingerDetector",
           "StrokeDetector", "detector_for", "map_iou", "artefact_locations", "location_scores", "LocationAgreement",
           "conditional_artefact_rate", "Fidelity", "Novelty", "nearest", "nearest_distance", "DigitCNN",
           "ReferenceClassifier", "get_classifier", "train_classifier", "MetricSuite", "build_suite"]

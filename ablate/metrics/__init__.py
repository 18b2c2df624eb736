"""Metrics over sets of generated images, as torchmetrics ``Metric``s (usable in training, evaluation
and sweeps alike)."""
from ablate.metrics.agreement import ELSAgreement, pairwise_agreement

__all__ = ["ELSAgreement", "pairwise_agreement"]

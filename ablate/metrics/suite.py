"""Every metric of a dataset, built once, scoring a set of samples in one call (sweeps and studies)."""
from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path

import torch

from ablate.data import DataConfig, ImageDataset, load_dataset
from ablate.metrics.artefacts import DETECTED, ArtefactRate, detector_for
from ablate.metrics.classifier import DEFAULT_CACHE, ReferenceClassifier, get_classifier
from ablate.metrics.coherence import Coherence, HandCoherence, classifier_fid
from ablate.metrics.realism import Fidelity, Novelty


@dataclass
class MetricSuite:
    """Coherence, artefact rate, classifier FID, fidelity and novelty for one dataset. The classifier
    (and so FID and the digit detector) is absent for unlabelled datasets and for signals; only the datasets with a
    declared global rule (:data:`~ablate.metrics.artefacts.DETECTED`) have an artefact rate; ``fingers``
    scores coherence as the fraction of samples that are a hand at all (:class:`HandCoherence`); ``pulses``
    has no coherence figure (its artefact rate, the wrong-pulse-count rate, is its global rule)."""

    data: ImageDataset
    classifier: ReferenceClassifier | None
    fidelity_reference: torch.Tensor
    fingers: int = 5
    pulses: int = 3
    _built: dict = field(default_factory=dict, repr=False)  # Fidelity and Novelty index the training set once

    @property
    def detector(self):
        return detector_for(self.data.name, self.classifier, self.fingers, self.pulses)

    def score(self, samples: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        """All figures for ``samples [B, C, H, W]`` (signals ``[B, C, L]``) in [-1, 1] (``labels``: requested
        classes, if any)."""
        if len(samples) == 0:
            raise ValueError("cannot score an empty batch of samples")
        samples = samples.detach().cpu().float()
        out: dict[str, float] = {}
        seconds: dict[str, float] = {}
        for name, metric, args in self._metrics(samples, labels):
            start = time.perf_counter()
            metric.update(*args)
            out.update({k: float(v) for k, v in metric.compute().items()})
            seconds[name] = time.perf_counter() - start
        if self.classifier is not None:
            start = time.perf_counter()
            fid = classifier_fid(self.classifier)
            fid.update(self.data.heldout, real=True)
            fid.update(samples, real=False)
            out["fid"] = float(fid.compute())
            seconds["fid"] = time.perf_counter() - start
        self.last_seconds = seconds
        return out

    def _indexed(self, name: str, build):
        """Metrics that index the training set are built once, then reset for each scoring."""
        if name not in self._built:
            self._built[name] = build()
        metric = self._built[name]
        metric.reset()
        return metric

    def _metrics(self, samples, labels):
        if self.classifier is not None:
            yield "coherence", Coherence(self.classifier), (samples, labels)
        elif self.data.name == "fingers":
            yield "coherence", HandCoherence(), (samples,)
        if self.data.name in DETECTED:  # a declared global rule (natural images, UCR sets and CIFAR declare none)
            yield "artefact_rate", ArtefactRate(self.detector), (samples,)
        patch = min(5, min(self.data.shape[1:]))
        yield "fidelity", self._indexed("fidelity", lambda: Fidelity(self.data.train, self.fidelity_reference,
                                                                     patch_size=patch)), (samples,)
        yield "novelty", self._indexed("novelty", lambda: Novelty(self.data.train)), (samples,)


def build_suite(data: DataConfig | ImageDataset, config: DataConfig | None = None,
                cache_dir: str | Path | None = DEFAULT_CACHE, progress: bool = False) -> MetricSuite:
    """The metric suite of a dataset. ``data``: a config (loaded here) or an already loaded dataset with
    its ``config``. Labelled datasets get the (cached) reference classifier."""
    if isinstance(data, DataConfig):
        config, data = data, load_dataset(data)
    from ablate.data.tokens import TokenDataset

    if isinstance(data, TokenDataset):
        from ablate.metrics.text import TextSuite

        return TextSuite(data)  # type: ignore[return-value]
    if config is None:
        raise ValueError("pass the DataConfig of a loaded dataset (the classifier is cached per config)")
    images = len(data.shape) == 3
    classifier = get_classifier(config, cache_dir, progress) if data.train_labels is not None and images else None
    return MetricSuite(data, classifier, data.heldout, fingers=config.fingers, pulses=config.pulses)

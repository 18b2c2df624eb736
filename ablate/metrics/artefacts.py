"""Artefacts: samples that break the dataset's global rule, and *where* they break it.

Each dataset declares its detector (``detector_for``):

- ``fingers``: the finger count differs from F (``ablate.data.count_fingers``);
  the map marks the extra fingers (the smallest ones beyond F).
- ``mnist5k`` / ``digits``: the classifier's confidence is below a threshold,
  or the binarised stroke (ink > -0.5) falls into more than one sizeable
  8-connected piece; the map marks every piece but the largest (stray strokes).
- ``pulses`` (signals ``[B, 1, L]``): the pulse count differs from P
  (``ablate.data.count_pulses``), the 1-D extra finger; the map ``[B, L]`` marks
  the extra pulses (the narrowest runs beyond P).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import numpy as np
import torch
from scipy import ndimage
from torchmetrics import Metric

from ablate.data import finger_components
from ablate.data.signals import pulse_runs
from ablate.metrics.classifier import ReferenceClassifier

INK = -0.5  # binarisation threshold for strokes (no real 14x14 mnist5k digit splits at it)


class Detector(Protocol):
    def flags(self, samples: torch.Tensor) -> torch.Tensor:
        """bool ``[B]``: which samples break the rule."""

    def maps(self, samples: torch.Tensor) -> torch.Tensor:
        """bool ``[B, H, W]``: the pixels of the offending parts."""


def _check(samples: torch.Tensor) -> None:
    if samples.dim() != 4 or samples.shape[1] != 1:
        raise ValueError(f"artefact detectors take grey images [B, 1, H, W]; got shape {tuple(samples.shape)}")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or inf values; all values must be finite")


class FingerDetector:
    """A hand must have exactly ``fingers`` fingers."""

    def __init__(self, fingers: int = 5) -> None:
        self.fingers = fingers

    def flags(self, samples: torch.Tensor) -> torch.Tensor:
        _check(samples)
        return torch.tensor([finger_components(s)[1] != self.fingers for s in samples], dtype=torch.bool)

    def maps(self, samples: torch.Tensor) -> torch.Tensor:
        _check(samples)
        out = np.zeros((len(samples),) + tuple(samples.shape[-2:]), dtype=bool)
        for i, s in enumerate(samples):
            labels, count = finger_components(s)
            if count > self.fingers:
                sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
                extra = np.argsort(sizes, kind="stable")[: count - self.fingers] + 1
                out[i] = np.isin(labels, extra)
        return torch.from_numpy(out)


class StrokeDetector:
    """A digit is one confident, connected stroke."""

    def __init__(self, classifier: ReferenceClassifier, confidence: float = 0.5, min_pixels: int | None = None) -> None:
        self.classifier, self.confidence, self.min_pixels = classifier, confidence, min_pixels

    def _pieces(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        labels, count = ndimage.label(image > INK, structure=np.ones((3, 3)))
        sizes = np.bincount(labels.ravel(), minlength=count + 1)[1:]
        min_pixels = self.min_pixels or max(3, image.size // 200)
        return labels, np.flatnonzero(sizes >= min_pixels) + 1  # labels of the sizeable pieces

    def flags(self, samples: torch.Tensor) -> torch.Tensor:
        _check(samples)
        unsure = self.classifier.probabilities(samples).max(1).values < self.confidence
        broken = torch.tensor([len(self._pieces(s[0].numpy())[1]) > 1 for s in samples.cpu()], dtype=torch.bool)
        return unsure.cpu() | broken

    def maps(self, samples: torch.Tensor) -> torch.Tensor:
        _check(samples)
        out = np.zeros((len(samples),) + tuple(samples.shape[-2:]), dtype=bool)
        for i, s in enumerate(samples.cpu()):
            labels, pieces = self._pieces(s[0].numpy())
            if len(pieces) > 1:
                sizes = np.bincount(labels.ravel())[pieces]
                out[i] = np.isin(labels, np.delete(pieces, sizes.argmax())) | (
                    (labels > 0) & ~np.isin(labels, pieces))  # stray specks too
        return torch.from_numpy(out)


class PulseDetector:
    """A ``pulses`` signal must have exactly ``pulses`` pulses (runs above the counting threshold)."""

    def __init__(self, pulses: int = 3) -> None:
        self.pulses = pulses

    @staticmethod
    def _check(samples: torch.Tensor) -> None:
        if samples.dim() != 3 or samples.shape[1] != 1:
            raise ValueError(f"the pulse detector takes one-channel signals [B, 1, L]; got shape {tuple(samples.shape)}")
        if not torch.isfinite(samples).all():
            raise ValueError("samples contain NaN or inf values; all values must be finite")

    def flags(self, samples: torch.Tensor) -> torch.Tensor:
        self._check(samples)
        return torch.tensor([len(pulse_runs(s)) != self.pulses for s in samples.cpu()], dtype=torch.bool)

    def maps(self, samples: torch.Tensor) -> torch.Tensor:
        self._check(samples)
        out = torch.zeros(len(samples), samples.shape[-1], dtype=torch.bool)
        for i, s in enumerate(samples.cpu()):
            runs = pulse_runs(s)
            if len(runs) > self.pulses:
                widths = torch.tensor([b - a for a, b in runs])
                for j in torch.argsort(widths, stable=True)[: len(runs) - self.pulses].tolist():
                    out[i, runs[j][0]:runs[j][1]] = True
        return out


DETECTED = ("fingers", "pulses", "mnist5k", "digits", "idx")  # the datasets with a declared global rule


def detector_for(dataset: str, classifier: ReferenceClassifier | None = None, fingers: int = 5,
                 pulses: int = 3) -> Detector:
    if dataset == "fingers":
        return FingerDetector(fingers)
    if dataset == "pulses":
        return PulseDetector(pulses)
    if dataset in ("mnist5k", "digits", "idx"):
        if classifier is None:
            raise ValueError(f"the {dataset!r} artefact detector needs the reference classifier")
        return StrokeDetector(classifier)
    raise ValueError(f"no artefact detector is declared for dataset {dataset!r}; "
                     "declared: fingers, pulses, mnist5k, digits, idx")


class ArtefactRate(Metric):
    """``update(samples)``; ``compute()`` -> ``artefact_rate``: the fraction of samples the detector flags."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, detector: Detector, **kwargs) -> None:
        super().__init__(**kwargs)
        self.detector = detector
        self.add_state("flagged", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, samples: torch.Tensor) -> None:
        self.flagged += self.detector.flags(samples.detach().cpu()).sum().to(self.flagged.device)
        self.count += len(samples)

    def compute(self) -> dict[str, torch.Tensor]:
        if self.count == 0:
            raise ValueError("ArtefactRate has no samples; call update() with a non-empty batch before compute()")
        return {"artefact_rate": self.flagged.double() / self.count}


def map_iou(a: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
    """Intersection over union of paired artefact maps ``[B, H, W]`` (1 where both are empty)."""
    inter = (a & b).flatten(1).sum(1).double()
    union = (a | b).flatten(1).sum(1).double()
    return torch.where(union > 0, inter / union.clamp_min(1), torch.ones_like(union))


@dataclass(frozen=True)
class LocationAgreement:
    """Whether two sets of samples from the same seeds put their artefacts in the same places (the seeds'
    question: does the theory predict *where* an extra finger grows, not only how often). ``hit_rate``: of
    the seeds where the reference (the trained network) made an artefact, the fraction where the other map
    (the oracle's) touches it, within ``tolerance`` pixels; ``iou``: the mean map IoU over the seeds where
    either made one. ``chance_*``: the same over every *mismatched* pair of seeds (seed i's oracle against
    seed j's network, i != j), the score of maps that share nothing but the data. ``seeds``: how many seeds
    the hit rate is over; ``pairs``: how many seeds the IoU is over."""

    hit_rate: float
    iou: float
    chance_hit_rate: float
    chance_iou: float
    seeds: int
    pairs: int


def _dilate(maps: torch.Tensor, pixels: int) -> torch.Tensor:
    if pixels <= 0:
        return maps
    size = 2 * pixels + 1
    x = maps.double()[:, None]
    pool = torch.nn.functional.max_pool2d if maps.dim() == 3 else torch.nn.functional.max_pool1d
    return pool(x, size, stride=1, padding=pixels)[:, 0] > 0


def location_scores(other: torch.Tensor, reference: torch.Tensor, tolerance: int) -> tuple[torch.Tensor, torch.Tensor,
                                                                                  torch.Tensor, torch.Tensor]:
    """Per seed of two artefact maps ``[S, H, W]`` (or ``[S, L]``): bool ``[S]`` the reference has an artefact,
    bool ``[S]`` the other touches it within ``tolerance`` pixels, bool ``[S]`` either has one, IoU ``[S]``."""
    ref_any = reference.flatten(1).any(1)
    touch = (_dilate(other, tolerance) & reference).flatten(1).any(1)
    either = (other | reference).flatten(1).any(1)
    return ref_any, touch, either, map_iou(other, reference)


def artefact_locations(other: torch.Tensor, reference: torch.Tensor, tolerance: int = 1) -> LocationAgreement:
    """Compare artefact maps ``[S, H, W]`` (or ``[S, L]``) of two sets of samples from the same ``S`` seeds
    (see :class:`LocationAgreement`); rates with nothing to count are NaN."""
    if other.shape != reference.shape or other.dim() not in (2, 3):
        raise ValueError(f"artefact maps must be two [S, H, W] (or [S, L]) tensors of one shape; got "
                         f"{tuple(other.shape)} and {tuple(reference.shape)}")
    other, reference = other.bool(), reference.bool()

    def rates(ref_any, touch, either, iou):
        hit = float(touch[ref_any].double().mean()) if ref_any.any() else float("nan")
        return hit, float(iou[either].mean()) if either.any() else float("nan")

    ref_any, touch, either, iou = location_scores(other, reference, tolerance)
    hit, overlap = rates(ref_any, touch, either, iou)
    S = len(other)
    mismatched = [location_scores(other.roll(s, 0), reference, tolerance) for s in range(1, S)]  # every pair i != j once
    if mismatched:
        chance_hit, chance_iou = rates(*(torch.cat(parts) for parts in zip(*mismatched)))
    else:
        chance_hit = chance_iou = float("nan")
    return LocationAgreement(hit, overlap, chance_hit, chance_iou, int(ref_any.sum()), int(either.sum()))


def conditional_artefact_rate(samples: torch.Tensor, fingers: int = 5) -> tuple[float, int]:
    """``fingers`` samples: the rate of wrong finger counts among the samples that are a hand at all
    (:func:`ablate.data.is_hand`), which separates the extra-finger failure from incoherence; and how many
    hands there were (NaN rate for none)."""
    from ablate.data import is_hand

    _check(samples)
    hands = [s for s in samples if is_hand(s)]
    if not hands:
        return float("nan"), 0
    wrong = sum(finger_components(s)[1] != fingers for s in hands)
    return wrong / len(hands), len(hands)

"""Global, semantic coherence: the reference classifier's confidence (and accuracy against the requested
class, for conditional generation), and the Fréchet distance in the classifier's feature space."""
from __future__ import annotations

import torch
from torchmetrics import Metric
from torchmetrics.image.fid import FrechetInceptionDistance

from ablate.metrics.classifier import FeatureExtractor, ReferenceClassifier


class Coherence(Metric):
    """``update(samples [B, C, H, W] in [-1, 1], labels [B] | None)``; ``compute()`` ->
    ``coherence``: mean max-softmax confidence; ``accuracy``: fraction classified as the requested label
    (NaN when no labels were given)."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, classifier: ReferenceClassifier, **kwargs) -> None:
        super().__init__(**kwargs)
        self.classifier = classifier
        self.add_state("confidence", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("correct", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("labelled", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, samples: torch.Tensor, labels: torch.Tensor | None = None) -> None:
        probs = self.classifier.probabilities(samples).to(self.confidence.device)
        self.confidence += probs.max(1).values.double().sum()
        self.count += len(probs)
        if labels is not None:
            labels = torch.as_tensor(labels, device=probs.device).long().reshape(-1)
            if labels.shape != (len(probs),):
                raise ValueError(f"labels must be [B] = [{len(probs)}], got {tuple(labels.shape)}")
            self.correct += (probs.argmax(1) == labels).sum()
            self.labelled += len(labels)

    def compute(self) -> dict[str, torch.Tensor]:
        if self.count == 0:
            raise ValueError("Coherence has no samples; call update() with a non-empty batch before compute()")
        accuracy = self.correct / self.labelled if self.labelled > 0 else torch.tensor(float("nan"))
        return {"coherence": self.confidence / self.count, "accuracy": accuracy}


def classifier_fid(classifier: ReferenceClassifier) -> FrechetInceptionDistance:
    """torchmetrics' FID with the project's classifier as the feature network (the MNIST-world FID):
    ``update(images in [-1, 1], real=True/False)``, ``compute()``. Inception weights are not needed."""
    return FrechetInceptionDistance(feature=FeatureExtractor(classifier.cnn).eval(), normalize=True,
                                    reset_real_features=False)


class HandCoherence(Metric):
    """Coherence of ``fingers`` samples, which have no classes to be confident about: ``update(samples
    [B, 1, H, W] in [-1, 1])``; ``compute()`` -> ``coherence``: the fraction that is one hand at all
    (:func:`ablate.data.is_hand`: a palm of the drawn size, one connected piece, at least one finger),
    whatever the finger count. Wrong counts are artefacts (``ArtefactRate``), not incoherence."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self.add_state("hands", default=torch.tensor(0), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def update(self, samples: torch.Tensor) -> None:
        from ablate.data import is_hand

        if samples.dim() != 4 or samples.shape[1] != 1:
            raise ValueError(f"HandCoherence takes grey images [B, 1, H, W]; got shape {tuple(samples.shape)}")
        if not torch.isfinite(samples).all():
            raise ValueError("samples contain NaN or inf values; all values must be finite")
        self.hands += sum(is_hand(s) for s in samples.detach().cpu())
        self.count += len(samples)

    def compute(self) -> dict[str, torch.Tensor]:
        if self.count == 0:
            raise ValueError("HandCoherence has no samples; call update() with a non-empty batch before compute()")
        return {"coherence": self.hands.double() / self.count}

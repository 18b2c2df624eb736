"""The reference classifier behind coherence, the MNIST-world FID and the digit artefact detector.

A small CNN trained with Lightning on the dataset's whole train split (not the
diffusion run's subset), at the image size the samples have, with random
one-pixel shifts as augmentation. It is trained once, on first use, and cached
under ``runs/classifiers/<dataset>-<hash>/`` with its held-out accuracy.

A closed-set classifier is confidently wrong on anything (it gives pure noise
98% confidence), so the CNN has one extra "not a digit" class trained on
generated junk (outlier exposure): uniform and Gaussian noise, pixel-shuffled
digits, and tile mosaics of different digits (locally realistic, globally
incoherent: what coherence must penalise). :meth:`ReferenceClassifier.probabilities`
returns the real classes' probabilities, which sum to less than 1 on junk.
"""
from __future__ import annotations

import dataclasses
import hashlib
import json
import time
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn
from torch.nn import functional as F

from ablate.config import to_dict
from ablate.data import DataConfig, load_dataset

DEFAULT_CACHE = None  # <runs root>/classifiers (ablate.paths)


class DigitCNN(nn.Module):
    """``[B, C, H, W]`` in [-1, 1] -> logits ``[B, classes]``; :meth:`features` gives the penultimate
    ``num_features`` numbers. Two conv/pool stages, then a 4x4 adaptive pool (any image size >= 8)."""

    def __init__(self, channels: int, classes: int, width: int = 32, num_features: int = 128) -> None:
        super().__init__()
        self.num_features = num_features
        self.body = nn.Sequential(
            nn.Conv2d(channels, width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
            nn.AdaptiveAvgPool2d(4), nn.Flatten(), nn.Linear(2 * width * 16, num_features), nn.ReLU())
        self.head = nn.Sequential(nn.Dropout(0.2), nn.Linear(self.num_features, classes))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        return self.body(x)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.body(x))


class FeatureExtractor(nn.Module):
    """The classifier's feature map as the ``feature=`` network of torchmetrics' FID (``[N, num_features]``)."""

    def __init__(self, cnn: DigitCNN) -> None:
        super().__init__()
        self.cnn = cnn
        self.num_features = cnn.num_features

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.cnn.features(x)


@dataclass(frozen=True)
class ReferenceClassifier:
    """A trained classifier with the shape it expects and its held-out accuracy."""

    cnn: DigitCNN
    image_shape: tuple[int, int, int]
    num_classes: int
    heldout_accuracy: float
    dataset: str

    def check(self, samples: torch.Tensor) -> None:
        if samples.dim() != 4 or tuple(samples.shape[1:]) != self.image_shape:
            raise ValueError(f"samples of shape {tuple(samples.shape)} do not fit the {self.dataset!r} classifier, "
                             f"which takes [B, {', '.join(map(str, self.image_shape))}]")
        if not torch.isfinite(samples).all():
            raise ValueError("samples contain NaN or inf values; all values must be finite")

    @torch.no_grad()
    def probabilities(self, samples: torch.Tensor) -> torch.Tensor:
        """``[B, num_classes]``: the real classes' softmax probabilities (the junk class left out)."""
        self.check(samples)
        self.cnn.eval()
        probs = torch.cat([F.softmax(self.cnn(b.float()), dim=1) for b in samples.split(1024)])
        return probs[:, : self.num_classes]


def _shift(x: torch.Tensor, generator: torch.Generator, pixels: int = 1) -> torch.Tensor:
    """Random translations by up to ``pixels`` (background -1 fills the gap)."""
    B, _, H, W = x.shape
    padded = F.pad(x, (pixels,) * 4, value=-1.0)
    dy, dx = torch.randint(0, 2 * pixels + 1, (2,), generator=generator).tolist()
    return padded[:, :, dy:dy + H, dx:dx + W]


def junk(x: torch.Tensor, generator: torch.Generator) -> torch.Tensor:
    """As many "not a digit" images as ``x [B, C, H, W]`` holds, in four kinds (a quarter each)."""
    B, C, H, W = x.shape
    kind = torch.arange(B) % 4
    uniform = torch.rand(x.shape, generator=generator) * 2 - 1
    gauss = (torch.randn(x.shape, generator=generator) * 0.7).clamp(-1, 1)
    perm = torch.randperm(H * W, generator=generator)
    shuffled = x.flatten(2)[:, :, perm].reshape(x.shape)
    tile = max(2, H // 4)
    rows, cols = -(-H // tile), -(-W // tile)
    donors = torch.randint(0, B, (B, rows, cols), generator=generator)
    mosaic = torch.empty_like(x)
    for i in range(rows):
        for j in range(cols):
            sl = (slice(None), slice(None), slice(i * tile, (i + 1) * tile), slice(j * tile, (j + 1) * tile))
            mosaic[sl] = x[donors[:, i, j]][sl]
    out = torch.stack([uniform, gauss, shuffled, mosaic])  # [4, B, C, H, W]
    return out[kind, torch.arange(B)]


def train_classifier(data: DataConfig, epochs: int = 20, seed: int = 0) -> ReferenceClassifier:
    """Train the CNN with Lightning on ``data``'s full train split; report held-out accuracy."""
    import lightning.pytorch as pl
    from torch.utils.data import DataLoader, TensorDataset

    full = load_dataset(dataclasses.replace(data, n=None, class_label=None))
    if full.train_labels is None:
        raise ValueError(f"dataset {data.name!r} has no labels; the reference classifier needs a labelled dataset")
    pl.seed_everything(seed, verbose=False)
    classes = int(full.num_classes)
    cnn = DigitCNN(full.shape[0], classes + 1)  # + the junk class

    class Module(pl.LightningModule):
        def __init__(self) -> None:
            super().__init__()
            self.cnn = cnn
            self.g = torch.Generator().manual_seed(seed)

        def training_step(self, batch, _):
            x, y = batch
            fake = junk(x[: max(1, len(x) // 4)], self.g)
            x = torch.cat([_shift(x, self.g), fake])
            y = torch.cat([y, torch.full((len(fake),), classes)])
            return F.cross_entropy(self.cnn(x), y)

        def configure_optimizers(self):
            opt = torch.optim.AdamW(self.cnn.parameters(), lr=2e-3, weight_decay=1e-4)
            return [opt], [torch.optim.lr_scheduler.CosineAnnealingLR(opt, epochs)]

    loader = DataLoader(TensorDataset(full.train, full.train_labels), batch_size=64, shuffle=True,
                        generator=torch.Generator().manual_seed(seed))
    trainer = pl.Trainer(max_epochs=epochs, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False)
    import warnings
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message=".*does not have many workers.*")
        trainer.fit(Module(), loader)
    reference = ReferenceClassifier(cnn.eval(), full.shape, classes, 0.0, data.name)
    acc = float((reference.probabilities(full.heldout).argmax(1) == full.heldout_labels).double().mean())
    return dataclasses.replace(reference, heldout_accuracy=acc)


def classifier_key(data: DataConfig) -> str:
    spec = to_dict(dataclasses.replace(data, n=None, class_label=None))
    return f"{data.name}-{hashlib.sha1(json.dumps(spec, sort_keys=True).encode()).hexdigest()[:10]}"


def get_classifier(data: DataConfig, cache_dir: str | Path | None = DEFAULT_CACHE, progress: bool = False) -> ReferenceClassifier:
    """The cached classifier for ``data`` (its name, size, split), training it on first use."""
    from ablate.paths import runs_root

    folder = Path(cache_dir if cache_dir is not None else runs_root() / "classifiers") / classifier_key(data)
    weights, info_path = folder / "classifier.pt", folder / "info.json"
    if weights.is_file() and info_path.is_file():
        try:
            info = json.loads(info_path.read_text())
            cnn = DigitCNN(info["image_shape"][0], info["num_classes"] + 1)
            cnn.load_state_dict(torch.load(weights, map_location="cpu", weights_only=True))
            return ReferenceClassifier(cnn.eval(), tuple(info["image_shape"]), info["num_classes"],
                                       info["heldout_accuracy"], data.name)
        except (OSError, ValueError, KeyError, RuntimeError) as err:
            print(f"classifier cache {folder} is unreadable ({type(err).__name__}); training it again", flush=True)
    start = time.perf_counter()
    if progress:
        print(f"training the reference classifier for {data.name} (first use) ...", flush=True)
    clf = train_classifier(data)
    folder.mkdir(parents=True, exist_ok=True)
    torch.save(clf.cnn.state_dict(), weights)
    info_path.write_text(json.dumps({"image_shape": list(clf.image_shape), "num_classes": clf.num_classes,
                                     "heldout_accuracy": clf.heldout_accuracy, "dataset": to_dict(data),
                                     "seconds": time.perf_counter() - start}, indent=1))
    return clf

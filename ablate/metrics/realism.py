"""Local realism (fidelity) and creativity vs memorisation (novelty), by exact nearest-neighbour search.

Both search with chunked GEMMs (``||q||^2 - 2 <q, k> + ||k||^2``, a running
minimum over key chunks): exact, and memory bounded by the chunk size.
"""
from __future__ import annotations

import torch
from torch.nn import functional as F
from torchmetrics import Metric


def nearest(queries: torch.Tensor, keys: torch.Tensor, chunk: int = 4096) -> tuple[torch.Tensor, torch.Tensor]:
    """Euclidean distance ``[Q]`` from each row of ``queries [Q, D]`` to its nearest row of ``keys [K, D]``,
    and that row's index ``[Q]``. Tiles of ``chunk x chunk`` squared distances (64 MB) stay in memory."""
    q, k = queries.float(), keys.float()
    kn = (k * k).sum(1)
    best = torch.full((len(q),), float("inf"))
    where = torch.zeros(len(q), dtype=torch.long)
    for a in range(0, len(q), chunk):
        qa = q[a:a + chunk]
        qn = (qa * qa).sum(1, keepdim=True)
        for s in range(0, len(k), chunk):
            d2 = torch.addmm(kn[None, s:s + chunk], qa, k[s:s + chunk].T, alpha=-2.0)  # ||k||^2 - 2 <q, k>
            d2, j = d2.min(1)
            d2 = d2 + qn[:, 0]
            better = d2 < best[a:a + chunk]
            best[a:a + chunk] = torch.where(better, d2, best[a:a + chunk])
            where[a:a + chunk] = torch.where(better, j + s, where[a:a + chunk])
    return best.clamp_min(0).sqrt(), where


def nearest_distance(queries: torch.Tensor, keys: torch.Tensor, chunk: int = 4096) -> torch.Tensor:
    """Euclidean distance ``[Q]`` from each row of ``queries [Q, D]`` to its nearest row of ``keys [K, D]``."""
    return nearest(queries, keys, chunk)[0]


def patches(images: torch.Tensor, k: int, stride: int = 1) -> torch.Tensor:
    """Every ``k x k`` patch lying inside the images ``[B, C, H, W]``: ``[B, P, C*k*k]``; for signals
    ``[B, C, L]``, every window of ``k`` samples: ``[B, P, C*k]``."""
    if images.dim() == 3:
        return F.unfold(images.float()[:, :, None], (1, k), stride=(1, stride)).transpose(1, 2)
    return F.unfold(images.float(), k, stride=stride).transpose(1, 2)


def _check(samples: torch.Tensor, shape: tuple[int, ...], name: str) -> None:
    if samples.dim() != len(shape) + 1 or tuple(samples.shape[1:]) != tuple(shape):
        raise ValueError(f"{name} takes samples [B, {', '.join(map(str, shape))}] like its training images; "
                         f"got {tuple(samples.shape)}")
    if not torch.isfinite(samples).all():
        raise ValueError("samples contain NaN or inf values; all values must be finite")


class Fidelity(Metric):
    """Mean distance from each ``k x k`` patch of a sample (at ``stride``) to its nearest training patch,
    divided by the same figure for ``reference`` real images (e.g. held-out ones): about 1 for realistic
    samples, larger for unrealistic ones. Training patches are deduplicated; beyond ``max_keys`` a fixed
    random subset is kept (the reference is measured against the same keys, so the ratio stays fair).
    ``compute()`` -> ``fidelity`` (lower is better) and ``patch_distance`` (unnormalised)."""

    is_differentiable = False
    higher_is_better = False
    full_state_update = False

    def __init__(self, train_images: torch.Tensor, reference: torch.Tensor, patch_size: int = 5, stride: int = 2,
                 max_keys: int = 50_000, seed: int = 0, **kwargs) -> None:
        super().__init__(**kwargs)
        spatial = tuple(train_images.shape[2:])
        if patch_size > min(spatial):
            raise ValueError(f"patch_size={patch_size} is larger than the {spatial} training data")
        self.k, self.stride, self.shape = patch_size, stride, tuple(train_images.shape[1:])
        keys = torch.unique(patches(train_images, patch_size).reshape(-1, self.shape[0] * patch_size ** len(spatial)),
                            dim=0)
        if len(keys) > max_keys:
            keys = keys[torch.randperm(len(keys), generator=torch.Generator().manual_seed(seed))[:max_keys]]
        self.keys = keys
        self.reference_distance = float(self._distances(reference).mean())
        self.add_state("total", default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")
        self.add_state("count", default=torch.tensor(0), dist_reduce_fx="sum")

    def _distances(self, images: torch.Tensor) -> torch.Tensor:
        """Per image: mean nearest-patch distance ``[B]``."""
        q = patches(images, self.k, self.stride)  # [B, P, D]
        return nearest_distance(q.reshape(-1, q.shape[-1]), self.keys).reshape(q.shape[:2]).mean(1)

    def update(self, samples: torch.Tensor) -> None:
        _check(samples, self.shape, "Fidelity")
        self.total += self._distances(samples.detach().cpu()).double().sum().to(self.total.device)
        self.count += len(samples)

    def compute(self) -> dict[str, torch.Tensor]:
        if self.count == 0:
            raise ValueError("Fidelity has no samples; call update() with a non-empty batch before compute()")
        mean = self.total / self.count
        return {"fidelity": mean / self.reference_distance, "patch_distance": mean}


class Novelty(Metric):
    """Each sample's distance to its nearest training image over the median nearest-neighbour distance
    among the training images themselves. ``compute()`` -> ``novelty`` (median ratio: 0 = copies,
    about 1 = as far from the training set as its own images are from each other) and
    ``memorisation_rate``: the fraction of samples closer to their nearest training image than
    ``threshold`` times *that image's* own nearest-neighbour distance. The local scale matters: thin
    digits (1s) crowd together, and a global scale calls honest held-out 1s copies (1.8% of the
    14x14 mnist5k held-out set at threshold 1/3), while a copy is at distance 0 either way."""

    is_differentiable = False
    higher_is_better = True
    full_state_update = False

    def __init__(self, train_images: torch.Tensor, threshold: float = 1 / 3, **kwargs) -> None:
        super().__init__(**kwargs)
        if len(train_images) < 2:
            raise ValueError("Novelty needs at least 2 training images (it measures their spacing)")
        self.shape, self.threshold = tuple(train_images.shape[1:]), threshold
        self.train = train_images.flatten(1).float()
        d = torch.cdist(self.train, self.train).fill_diagonal_(float("inf"))
        self.own_nn = d.amin(1)  # [N] each training image's distance to its nearest other one
        self.scale = float(self.own_nn.median())
        self.add_state("ratios", default=[], dist_reduce_fx="cat")
        self.add_state("copies", default=[], dist_reduce_fx="cat")

    def update(self, samples: torch.Tensor) -> None:
        _check(samples, self.shape, "Novelty")
        dist, j = nearest(samples.detach().cpu().flatten(1), self.train)
        self.ratios.append(dist / self.scale)
        self.copies.append((dist < self.threshold * self.own_nn[j]).double())

    def compute(self) -> dict[str, torch.Tensor]:
        if not self.ratios:
            raise ValueError("Novelty has no samples; call update() with a non-empty batch before compute()")
        cat = lambda v: torch.cat(v) if isinstance(v, list) else v  # noqa: E731 (a list before sync)
        return {"novelty": cat(self.ratios).median(), "memorisation_rate": cat(self.copies).mean()}

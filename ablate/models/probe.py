"""Measure what the mapping rule needs from any network: receptive field, equivariance stride, global mixing.

Every probe runs the network itself (float64, eval mode, one noise level), so it works on ablate's
backbones, a diffusers ``UNet2DModel`` or any module, on a square canvas larger than its training
images (a convolutional network takes any size; the canvas grows until the receptive field fits).

* **receptive field**: the extent of the gradient of one output pixel with respect to the input, the
  largest over the ``stride x stride`` output phases (a pooled network's pixels differ by phase), on two
  random inputs. Max-pooling is probed as average pooling (same windows; max-pooling's gradient reaches
  only the window's maximum). ``None`` when the gradient reaches the whole canvas: global.
* **local receptive field**: the same with the global mixers' own contributions cut from the gradient:
  normalisation statistics over the whole image (GroupNorm, InstanceNorm, LayerNorm over space, BatchNorm
  in training mode) are treated as constants, and attention layers as the identity of their residual path
  (``nn.MultiheadAttention`` and diffusers' ``Attention``), global pooling as a constant. This is the
  network's convolutional path, the machine the rule maps it to. The full receptive field is measured on
  the canvas the local one fits in: a gradient that reaches that canvas's edge can only come from the
  global mixers, so it is reported as global without growing the canvas further.
* **stride**: the smallest shift in 1, 2, 4, ... 32 that commutes with the network exactly (1e-8 relative,
  float64): ``f(shift(x)) = shift(f(x))``. With zero padding the input is a random patch in the middle of
  a zero canvas, compared away from the border; with circular padding, random everywhere, compared
  everywhere. ``None`` when no shift commutes (e.g. position embeddings).
* **global mixing**: change one input pixel outside the probed pixel's local receptive field and measure
  the change of the probed output relative to its size (``global_effect``; 0 for a local network).
"""
from __future__ import annotations

import contextlib
from dataclasses import asdict, dataclass
from typing import Any, Callable, Iterator

import torch
from torch import nn

MAX_CANVAS = 256
SHIFTS = (1, 2, 4, 8, 16, 32)
EQUIVARIANCE_TOL = 1e-8
RawFn = Callable[..., torch.Tensor]  # (x [B, C, H, W], alpha_bar [B]) -> the network's output, like x


@dataclass(frozen=True)
class ProbeResult:
    """What the probes measured (see the module docstring); ``canvas``: the side of the probe images."""

    receptive_field: int | None
    local_receptive_field: int | None
    stride: int | None
    global_mixing: bool
    global_effect: float
    global_modules: tuple[str, ...]
    padding: str
    canvas: int

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _global_norm(m: nn.Module) -> bool:
    if isinstance(m, (nn.GroupNorm, nn.modules.instancenorm._InstanceNorm)):
        return True
    if isinstance(m, nn.modules.batchnorm._BatchNorm):
        return m.training or not m.track_running_stats
    return isinstance(m, nn.LayerNorm) and len(m.normalized_shape) >= 2


def _is_attention(m: nn.Module) -> bool:
    return isinstance(m, nn.MultiheadAttention) or (type(m).__name__ == "Attention" and hasattr(m, "to_q"))


def global_modules(module: nn.Module) -> tuple[str, ...]:
    """The module types that mix information across the whole image, with counts, e.g. ``GroupNorm x 13``."""
    counts: dict[str, int] = {}
    for m in module.modules():
        if _global_norm(m) or _is_attention(m) or isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
            counts[type(m).__name__] = counts.get(type(m).__name__, 0) + 1
    return tuple(f"{k} x {v}" for k, v in counts.items())


def _normalise_with_constant_stats(m: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The module's output with its statistics detached (same value, gradient through the pixel only)."""
    B, C = x.shape[:2]
    if isinstance(m, nn.LayerNorm):
        dims = tuple(range(x.dim() - len(m.normalized_shape), x.dim()))
        mean, var = x.mean(dims, keepdim=True), x.var(dims, unbiased=False, keepdim=True)
        y = (x - mean.detach()) / (var.detach() + m.eps).sqrt()
        return y * m.weight + m.bias if m.elementwise_affine else y
    groups = m.num_groups if isinstance(m, nn.GroupNorm) else C
    xs = x.reshape(B, groups, -1) if not isinstance(m, nn.modules.batchnorm._BatchNorm) else x.transpose(0, 1).reshape(C, -1)
    mean, var = xs.mean(-1, keepdim=True).detach(), xs.var(-1, unbiased=False, keepdim=True).detach()
    y = (xs - mean) / (var + m.eps).sqrt()
    y = y.reshape(x.shape) if not isinstance(m, nn.modules.batchnorm._BatchNorm) else y.reshape(C, B, *x.shape[2:]).transpose(0, 1)
    weight, bias = getattr(m, "weight", None), getattr(m, "bias", None)
    if weight is not None:
        shape = (1, C) + (1,) * (x.dim() - 2)
        y = y * weight.view(shape) + bias.view(shape)
    return y


@contextlib.contextmanager
def _probe_mode(module: nn.Module, local: bool) -> Iterator[None]:
    """Max-pooling as average pooling; with ``local``, the global mixers cut from the gradient."""
    handles = []

    def avg_pool(m, inp, out):
        pool = nn.functional.avg_pool1d if isinstance(m, nn.MaxPool1d) else nn.functional.avg_pool2d
        return pool(inp[0], m.kernel_size, m.stride, m.padding)

    def constant_stats(m, inp, out):
        return _normalise_with_constant_stats(m, inp[0])

    def identity_attention(m, inp, out):
        if isinstance(m, nn.MultiheadAttention):
            return (out[0].detach(),) + tuple(out[1:])
        x = inp[0] if inp else None
        if getattr(m, "residual_connection", False) and isinstance(x, torch.Tensor) and x.shape == out.shape:
            return x + (out - x).detach()
        return out.detach()

    try:
        for m in module.modules():
            if isinstance(m, (nn.MaxPool1d, nn.MaxPool2d)):
                handles.append(m.register_forward_hook(avg_pool))
            elif local and _global_norm(m):
                handles.append(m.register_forward_hook(constant_stats))
            elif local and _is_attention(m):
                handles.append(m.register_forward_hook(identity_attention))
            elif local and isinstance(m, (nn.AdaptiveAvgPool2d, nn.AdaptiveMaxPool2d)):
                handles.append(m.register_forward_hook(lambda m, i, o: o.detach()))
        yield
    finally:
        for h in handles:
            h.remove()


def _canvas(size: int, multiple: int) -> int:
    return max(multiple, -(-size // multiple) * multiple)


class _Probe:
    def __init__(self, module: nn.Module, raw: RawFn, channels: int, multiple: int, alpha_bar: float, seed: int) -> None:
        self.module, self.raw, self.channels, self.multiple = module, raw, channels, multiple
        self.alpha_bar, self.seed = alpha_bar, seed

    def f(self, x: torch.Tensor) -> torch.Tensor:
        ab = torch.full((len(x),), self.alpha_bar, dtype=torch.float64, device=x.device)
        out = self.raw(x, ab)
        if not torch.isfinite(out).all():
            raise ValueError("the network returned NaN or inf on a probe input; cannot measure its geometry")
        return out

    def noise(self, shape: tuple[int, ...], offset: int = 0) -> torch.Tensor:
        g = torch.Generator().manual_seed(self.seed + offset)
        return torch.randn(shape, generator=g, dtype=torch.float64).to(self.device)

    @property
    def device(self) -> torch.device:
        p = next(self.module.parameters(), None)
        return p.device if p is not None else torch.device("cpu")

    def extent(self, canvas: int, phases: int, local: bool) -> int:
        """Largest gradient extent (rows or columns) of the output pixels at the canvas centre's ``phases^2``
        positions, over two random inputs."""
        c = canvas // 2 - (canvas // 2) % max(phases, 1)
        pixels = [(c + dy, c + dx) for dy in range(phases) for dx in range(phases)]
        best = 0
        with _probe_mode(self.module, local):
            for trial in range(2):
                for start in range(0, len(pixels), 4):
                    chunk = pixels[start:start + 4]
                    x = self.noise((len(chunk), self.channels, canvas, canvas), trial).requires_grad_(True)
                    out = self.f(x)
                    picked = torch.stack([out[b, :, py, px].sum() for b, (py, px) in enumerate(chunk)])
                    (grad,) = torch.autograd.grad(picked.sum(), x)
                    mask = grad.abs().amax(1) > 0  # [b, H, W]
                    for b in range(len(chunk)):
                        rows = mask[b].any(1).nonzero().flatten()
                        cols = mask[b].any(0).nonzero().flatten()
                        if len(rows):
                            best = max(best, int(rows[-1] - rows[0]) + 1, int(cols[-1] - cols[0]) + 1)
        return best

    def receptive_field(self, phases: int, local: bool, start: int = 32) -> tuple[int | None, int]:
        """(extent or None if it reaches across every canvas up to ``MAX_CANVAS``, the canvas used)."""
        canvas = _canvas(start, self.multiple)
        while True:
            e = self.extent(canvas, phases, local)
            if e < canvas - 1:
                return e, canvas
            if canvas >= MAX_CANVAS:
                return None, canvas
            canvas = _canvas(min(2 * canvas, MAX_CANVAS), self.multiple)

    @torch.no_grad()
    def commutes(self, shift: int, canvas: int, padding: str, margin: int) -> bool:
        C = self.channels
        if padding == "circular":
            x = self.noise((1, C, canvas, canvas), 7)
            a = self.f(torch.roll(x, (shift, shift), (2, 3)))
            b = torch.roll(self.f(x), (shift, shift), (2, 3))
        else:
            x = torch.zeros((1, C, canvas, canvas), dtype=torch.float64, device=self.device)
            w = 16
            lo = canvas // 2 - w // 2
            x[..., lo:lo + w, lo:lo + w] = self.noise((1, C, w, w), 7)
            a = self.f(torch.roll(x, (shift, shift), (2, 3)))
            b = torch.roll(self.f(x), (shift, shift), (2, 3))
            m = margin + shift
            a, b = a[..., m:canvas - m, m:canvas - m], b[..., m:canvas - m, m:canvas - m]
        return float((a - b).abs().max()) <= EQUIVARIANCE_TOL * max(float(b.abs().max()), 1e-12)

    @torch.no_grad()
    def global_effect(self, canvas: int) -> float:
        """Relative change of the centre output when the input pixel (1, 1) changes by 3."""
        x = self.noise((1, self.channels, canvas, canvas), 11)
        y = x.clone()
        y[..., 1, 1] += 3.0
        c = canvas // 2
        a, b = self.f(x)[..., c, c], self.f(y)[..., c, c]
        return float((a - b).abs().max() / a.abs().max().clamp_min(1e-12))


def probe_network(module: nn.Module, raw: RawFn, channels: int, padding: str = "zeros", multiple: int = 1,
                  alpha_bar: float = 0.5, seed: int = 0) -> ProbeResult:
    """Probe ``raw(x, alpha_bar)`` (the network's own output, evaluated through ``module``'s parameters) on
    ``channels``-channel square canvases whose side is a multiple of ``multiple`` (a UNet's ``2**D``).
    The module runs in float64 and eval mode for the probes and is restored afterwards."""
    params = list(module.parameters())
    dtype = params[0].dtype if params else torch.float32
    was_training = module.training
    module.eval()
    cast = nn.Module._apply  # not .to(): diffusers' models warn on a dtype cast through .to()
    cast(module, lambda t: t.double() if t.is_floating_point() else t)
    try:
        p = _Probe(module, raw, channels, multiple, alpha_bar, seed)
        first, _ = p.receptive_field(1, local=True)
        size = 2 * (first or MAX_CANVAS // 2) + 16 + 2 * max(SHIFTS)
        canvas = min(_canvas(max(size, 64), multiple), _canvas(MAX_CANVAS, multiple))
        margin = (first or 0) // 2 + 1
        stride = next((s for s in SHIFTS if s <= canvas // 4 and p.commutes(s, canvas, padding, margin)), None)
        phases = stride or 1
        local_rf, rf_canvas = p.receptive_field(phases, local=True, start=first or 32)
        rf = None
        if local_rf is not None:  # on the canvas the local path fits in, reaching its edge can only be global mixing
            full = p.extent(rf_canvas, phases, local=False)
            rf = full if full < rf_canvas - 1 else None
        effect = p.global_effect(min(_canvas(max(64, 2 * (local_rf or MAX_CANVAS) + 8), multiple),
                                     _canvas(MAX_CANVAS, multiple)))
        return ProbeResult(rf, local_rf, stride, rf is None or effect > 1e-10, effect, global_modules(module),
                           padding, rf_canvas)
    finally:
        cast(module, lambda t: t.to(dtype) if t.is_floating_point() else t)
        module.train(was_training)

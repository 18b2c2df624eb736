"""Typed, frozen configuration of a diffusion backbone."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal, Mapping

from ablate.config import check_choice, check_int

BACKBONES = ("resnet", "unet", "unet_attn", "resnet1d", "unet1d", "unet_attn1d", "diffusers_unet", "module",
             "token_resnet", "token_transformer")
SIGNAL_BACKBONES = ("resnet1d", "unet1d", "unet_attn1d")  # Conv1d versions for signals [B, C, L]
TOKEN_BACKBONES = ("token_resnet", "token_transformer")  # masked-diffusion denoisers of token sequences [B, L]
FOREIGN = ("diffusers_unet", "module")  # backbones whose own settings pass through as ``options``
PADDINGS = ("zeros", "circular")
NORMS = ("none", "group")


@dataclass(frozen=True)
class BackboneConfig:
    """A noise-predicting backbone.

    name: ``resnet`` (the paper's minimal ResNet: up-projection conv, ``depth``
    residual 3x3 conv layers with the noise-level (and class) embedding added
    before each, down-projection conv), ``unet`` (``depth`` = D max-pool /
    transposed-conv stages with skip connections) or ``unet_attn`` (the same
    UNet with self-attention at every resolution below the input's).
    width: channels of the ResNet, or of the UNet's first stage.
    stage_widths: the UNet's channels per stage, ``D + 1`` numbers (default
    ``width * 2**level``). padding: ``zeros`` or ``circular``, used by every
    conv. norm: ``none`` (the paper's default: keeps every layer local) or
    ``group`` (GroupNorm with ``groups`` groups; note that its statistics are
    global, so it weakens locality). emb_dim: size of the noise-level
    embedding. heads: attention heads (``unet_attn``).
    ``diffusers_unet``: diffusers' ``UNet2DModel`` (:mod:`ablate.models.diffusers_unet`); its own settings
    (``block_out_channels``, ``layers_per_block``, ``down_block_types``, ``norm_num_groups``, ...) are given
    as ``model.<key>`` and kept in ``options``; ``depth``/``width``/``norm`` do not apply to it.
    ``module``: any ``nn.Module`` from ``model.factory=package.module:factory`` with ``model.time_input`` and
    ``model.prediction_type`` (:mod:`ablate.models.module_backbone`), also kept in ``options``.
    ``resnet1d``, ``unet1d``, ``unet_attn1d``: the same three designs for signals ``[B, C, L]`` (Conv1d,
    3-sample kernels, pooling by 2 along the axis; theory section 11).
    ``token_resnet``, ``token_transformer``: masked-diffusion denoisers of token sequences (theory section 12;
    :mod:`ablate.models.tokens`): a Conv1d ResNet over token embeddings (receptive field ``2 depth + 1``), and a
    transformer of ``depth`` layers whose attention sees ``window`` positions either side (None: every
    position, with absolute position embeddings).
    """

    name: Literal["resnet", "unet", "unet_attn", "resnet1d", "unet1d", "unet_attn1d", "diffusers_unet",
                  "module", "token_resnet", "token_transformer"] = "resnet"
    depth: int = 6
    width: int = 32
    stage_widths: tuple[int, ...] = ()
    padding: Literal["zeros", "circular"] = "zeros"
    norm: Literal["none", "group"] = "none"
    groups: int = 8
    emb_dim: int = 128
    heads: int = 4
    options: dict[str, Any] = field(default_factory=dict)
    window: int | None = None  # token_transformer: attention within this many positions either side (None: all)

    @classmethod
    def absorb_unknown(cls, values: Mapping[str, Any]) -> dict[str, Any]:
        """For :func:`~ablate.config.build_config`: ``attention: true`` turns a UNet into ``unet_attn`` (the
        sweeps' knob); for ``diffusers_unet`` and ``module``, keys that are not fields move into ``options``
        (``model.block_out_channels=...`` on the command line), checked in ``__post_init__``."""
        values = dict(values)
        if values.pop("attention", False):
            name = values.get("name", cls.name)
            if name not in ("unet", "unet_attn", "unet1d", "unet_attn1d"):
                raise ValueError(f"attention=true needs a UNet; got name={name!r}")
            values["name"] = "unet_attn1d" if name.endswith("1d") else "unet_attn"
        if values.get("name") not in FOREIGN:
            return values
        fields = set(cls.__dataclass_fields__)
        extra = {k: values.pop(k) for k in list(values) if k not in fields}
        values["options"] = {**dict(values.get("options") or {}), **extra}
        return values

    def __post_init__(self) -> None:
        check_choice("backbone", self.name, BACKBONES)
        if not isinstance(self.options, dict):
            raise ValueError(f"model.options must be a mapping, got {self.options!r}")
        if self.name in FOREIGN:
            self.foreign_options()
            return
        if self.options:
            raise ValueError(f"model options {sorted(self.options)} apply to name=diffusers_unet or module only, "
                             f"not {self.name!r}")
        check_choice("padding", self.padding, PADDINGS)
        check_choice("norm", self.norm, NORMS)
        check_int("depth", self.depth, low=1 if self.family != "resnet" else 0, high=64)
        check_int("width", self.width, low=1)
        check_int("groups", self.groups, low=1)
        check_int("emb_dim", self.emb_dim, low=2)
        check_int("heads", self.heads, low=1)
        if self.window is not None:
            if self.name != "token_transformer":
                raise ValueError(f"window applies to name=token_transformer only, not {self.name!r}")
            check_int("window", self.window, low=1)
        if self.name == "token_transformer":
            if self.padding != "zeros":
                raise ValueError("token_transformer has no padding; its window stops at the sequence's ends "
                                 "(padding=zeros)")
            if self.width % self.heads:
                raise ValueError(f"width {self.width} is not divisible by heads={self.heads}")
        if self.tokens and self.norm != "none":
            raise ValueError(f"norm applies to the image and signal backbones, not {self.name!r}")
        if self.family != "resnet" and self.stage_widths and len(self.stage_widths) != self.depth + 1:
            raise ValueError(f"stage_widths has {len(self.stage_widths)} entries but a UNet of depth "
                             f"{self.depth} has {self.depth + 1} stages; give {self.depth + 1} widths or none")
        for w in self.widths:
            check_int("stage width", w, low=1)
            if self.norm == "group" and w % self.groups:
                raise ValueError(f"width {w} is not divisible by groups={self.groups}; GroupNorm needs "
                                 f"every width to be a multiple of the group count")
            if self.attention and w % self.heads:
                raise ValueError(f"width {w} is not divisible by heads={self.heads}; attention needs "
                                 f"every width to be a multiple of the head count")

    def foreign_options(self) -> dict[str, Any]:
        """``options`` completed and checked by the foreign backbone's own module."""
        if self.name == "diffusers_unet":
            from ablate.models.diffusers_unet import check_options
        else:
            from ablate.models.module_backbone import check_options
        return check_options(self.options)

    @property
    def dims(self) -> int:
        """Spatial axes of the data the backbone takes: 1 (signals, token sequences) or 2 (images)."""
        return 1 if self.name in SIGNAL_BACKBONES + TOKEN_BACKBONES else 2

    @property
    def tokens(self) -> bool:
        """A denoiser of token sequences (masked diffusion) rather than of images or signals."""
        return self.name in TOKEN_BACKBONES

    @property
    def family(self) -> str:
        """The design whatever the number of axes: ``resnet``, ``unet``, ``unet_attn`` (or a foreign name)."""
        return self.name[:-2] if self.name in SIGNAL_BACKBONES else self.name

    @property
    def attention(self) -> bool:
        return self.family == "unet_attn"

    @property
    def widths(self) -> tuple[int, ...]:
        """Channels per stage: one entry for the ResNet, ``D + 1`` for the UNets."""
        if self.family in ("resnet", "module") or self.tokens:
            return (self.width,)
        if self.name == "diffusers_unet":
            from ablate.models.diffusers_unet import check_options

            return tuple(check_options(self.options)["block_out_channels"])
        return self.stage_widths or tuple(self.width * 2**level for level in range(self.depth + 1))

    @property
    def stride(self) -> int:
        """Equivariance stride: shifts by multiples of it commute with the network (``2**D`` for a UNet; a
        ``UNet2DModel`` down-samples after every block but the last: ``2**(levels - 1)``)."""
        if self.name == "diffusers_unet":
            from ablate.models.diffusers_unet import levels

            return 2 ** (levels(self.options) - 1)
        return 1 if self.family in ("resnet", "module") or self.tokens else 2**self.depth  # a module's: measured

    def check_image_size(self, *spatial: int) -> None:
        """The data's spatial size suits the backbone: images ``(H, W)`` for the 2-D backbones, signals
        ``(L,)`` for the 1-D ones, and a UNet needs every side divisible by ``2**D`` (so that every pooling
        stage is exact)."""
        if len(spatial) != self.dims:
            have = "signals [C, L]" if len(spatial) == 1 else "images [C, H, W]"
            other = ("resnet, unet, unet_attn, diffusers_unet or module" if len(spatial) == 2
                     else ", ".join(SIGNAL_BACKBONES))
            raise ValueError(f"backbone {self.name!r} takes {'signals' if self.dims == 1 else 'images'} but the data "
                             f"are {have}; for these data choose model.name = {other}")
        if any(side % self.stride for side in spatial):
            size = "x".join(map(str, spatial))
            sides = "signal length" if self.dims == 1 else "image sides"
            if self.name == "diffusers_unet":
                raise ValueError(f"diffusers_unet with {len(self.widths)} levels needs image sides divisible by "
                                 f"{self.stride}; got {size}")
            raise ValueError(f"{self.name} with depth {self.depth} needs {sides} divisible by "
                             f"2**{self.depth} = {self.stride}; got {size}")

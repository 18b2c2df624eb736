"""``load_denoiser(source)``: any network behind the denoiser interface.

``source`` is one of:

* an ablate training checkpoint (``.ckpt``, EMA weights; read with ``weights_only=True``);
* a diffusers folder written by ``save_pretrained``: a model folder (``config.json`` with a
  ``_class_name`` such as ``UNet2DModel``, weights as ``.safetensors``) with its scheduler config beside
  it (``scheduler_config.json``, or ``scheduler/`` next to it), or a pipeline folder (``model_index.json``,
  ``unet/`` and ``scheduler/``, e.g. a ``DDPMPipeline``). The scheduler config gives ``alphas_cumprod``,
  ``prediction_type`` and ``clip_sample``; ``net.*`` keys override them or stand in for a missing one;
* ``package.module:factory``: any ``nn.Module`` the factory returns (``net.kwargs``), with weights from
  ``net.weights`` (``.safetensors``, or a state dict readable with ``weights_only=True``) and a declaration
  of what it predicts and how it takes time (``net.prediction_type``, ``net.time_input``; see
  :class:`~ablate.models.foreign.NetworkSpec`);
* a TorchScript file (``torch.jit.save``), with the same declaration.

No pickled module is ever unpickled: diffusers weights must be safetensors.
"""
from __future__ import annotations

import json
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import torch
from torch import nn

from ablate.models.checkpoint import backbone_from_checkpoint, read_checkpoint
from ablate.models.config import BackboneConfig
from ablate.models.denoiser import NetworkDenoiser
from ablate.models.factory import FACTORY, call_factory, conv_padding
from ablate.models.foreign import PREDICTION_TYPES, ForeignDenoiser, NetworkSpec, TimeMap
from ablate.sampling import Denoiser, DiscreteSchedule, Schedule

@dataclass(frozen=True)
class LoadedNetwork:
    """A network ready to evaluate. denoiser: ``x0_hat = D(x_t, alpha_bar, labels)``. raw: the network's own
    output at ``(x [B, C, H, W], alpha_bar [B], labels)``, for probes. schedule: what it was trained on
    (a continuous schedule's name or a :class:`DiscreteSchedule`). image_shape ``(C, H, W)`` when the
    network says (ablate meta, a diffusers ``sample_size``), else None. train_config: ablate's own runs' resolved
    training config, as plain data (:func:`ablate.training.checkpoint.config_of` types it); backbone: their
    backbone's config."""

    denoiser: Denoiser
    module: nn.Module
    raw: Callable[..., torch.Tensor]
    kind: str
    source: str
    schedule: Schedule
    image_shape: tuple[int, int, int] | None
    num_classes: int | None
    padding: str
    train_config: dict[str, Any] | None = None
    backbone: BackboneConfig | None = None
    description: dict[str, Any] = field(default_factory=dict)

    def probe(self, image_shape: tuple[int, int, int]):
        """:func:`~ablate.models.probe.probe_network` on canvases as divisible by 2 as images ``(C, H, W)``."""
        from ablate.models.probe import probe_network

        C, H, W = image_shape
        return probe_network(self.module, self.raw, C, self.padding, min(H & -H, W & -W, 32))


def load_denoiser(source: str | Path, spec: NetworkSpec | None = None,
                  device: str | torch.device = "cpu") -> LoadedNetwork:
    """Load ``source`` (see the module docstring) on ``device``. Errors say what was found and what is allowed."""
    spec = spec or NetworkSpec()
    text = str(source)
    path = Path(text)
    if path.is_dir():
        return _load_diffusers(path, spec, device)
    if path.is_file():
        if _is_torchscript(path):
            return _load_module(torch.jit.load(str(path), map_location="cpu"), text, "torchscript", spec, device)
        return _load_ablate(path, spec, device)
    if FACTORY.match(text):
        return _load_module(call_factory(text, spec.kwargs, spec.weights), text, "module", spec, device)
    raise ValueError(f"cannot find network {text!r}: give an ablate checkpoint (.ckpt), a diffusers folder "
                     "(save_pretrained of a UNet2DModel or a pipeline), a TorchScript file, or "
                     "package.module:factory")


# ---------------------------------------------------------------- ablate checkpoints
def _load_ablate(path: Path, spec: NetworkSpec, device) -> LoadedNetwork:
    if spec != NetworkSpec():
        raise ValueError(f"{path} is an ablate checkpoint: it declares its own time input and prediction; "
                         "drop the net.* settings")
    ckpt = read_checkpoint(path)
    backbone, model = backbone_from_checkpoint(ckpt, path, device)
    config, meta = ckpt["ablate"]["config"], ckpt["ablate"]["meta"]
    return LoadedNetwork(
        denoiser=NetworkDenoiser(backbone), module=backbone,
        raw=lambda x, ab, labels=None: backbone(x, ab.to(x.dtype), labels), kind="ablate", source=str(path),
        schedule=config.get("noise_schedule", "cosine"), image_shape=tuple(meta["image_shape"]),
        num_classes=meta["num_classes"], padding=model.padding, train_config=config, backbone=model,
        description={"checkpoint": str(path), "step": int(ckpt.get("global_step", 0)), "model": model.name})


# ---------------------------------------------------------------- diffusers folders
def _read_json(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as err:
        raise ValueError(f"cannot read {path}: {err}") from err
    if not isinstance(data, dict):
        raise ValueError(f"{path} must hold a JSON object")
    return data


def _diffusers_parts(path: Path) -> tuple[Path, Path | None]:
    """(model folder, scheduler config or None) of a model or pipeline folder."""
    if (path / "model_index.json").is_file():
        index = _read_json(path / "model_index.json")
        name = "unet" if "unet" in index else next((k for k, v in index.items() if isinstance(v, list)
                                                    and len(v) == 2 and "Model" in str(v[1])), None)
        if name is None or not (path / name / "config.json").is_file():
            raise ValueError(f"pipeline folder {path} has no denoising model (expected unet/config.json); "
                             f"its components: {', '.join(k for k in index if not k.startswith('_'))}")
        scheduler = path / "scheduler" / "scheduler_config.json"
        return path / name, scheduler if scheduler.is_file() else None
    if (path / "config.json").is_file() and "_class_name" in _read_json(path / "config.json"):
        for candidate in (path / "scheduler_config.json", path / "scheduler" / "scheduler_config.json",
                          path.parent / "scheduler" / "scheduler_config.json"):
            if candidate.is_file():
                return path, candidate
        return path, None
    raise ValueError(f"{path} is a folder but not a diffusers model: expected config.json with a '_class_name' "
                     "(a model's save_pretrained, e.g. UNet2DModel) or model_index.json with unet/ and scheduler/ "
                     "(a pipeline's save_pretrained)")


def _load_diffusers(path: Path, spec: NetworkSpec, device) -> LoadedNetwork:
    import diffusers

    model_dir, scheduler_path = _diffusers_parts(path)
    config = _read_json(model_dir / "config.json")
    cls_name = config["_class_name"]
    cls = getattr(diffusers, cls_name, None)
    if cls is None or not isinstance(cls, type) or not issubclass(cls, nn.Module):
        raise ValueError(f"{model_dir}: model class {cls_name!r} is not a diffusers model class")
    if not any(model_dir.glob("*.safetensors")):
        raise ValueError(f"{model_dir} has no .safetensors weights; ablate loads only safetensors (pickled .bin "
                         "files can run code). Re-save with save_pretrained(..., safe_serialization=True)")
    try:
        module = cls.from_pretrained(str(model_dir), use_safetensors=True, local_files_only=True,
                                     low_cpu_mem_usage=False)
    except (OSError, ValueError, RuntimeError, TypeError) as err:
        raise ValueError(f"cannot load {cls_name} from {model_dir}: {str(err).splitlines()[0][:300]}") from err
    scheduler = _read_json(scheduler_path) if scheduler_path is not None else {}
    if scheduler_path is None and not spec.declared:
        raise ValueError(f"{path} has no scheduler config (scheduler_config.json beside the model, or scheduler/ "
                         "in a pipeline) and no declaration: say how the model takes time, e.g. "
                         "net.time_input=discrete net.beta_schedule=linear (or net.alphas_cumprod=FILE), or "
                         "net.time_input=continuous|sigma|log_snr|alpha_bar")
    time_input = spec.time_input or "discrete"
    schedule: Schedule = spec.discrete_schedule() or (DiscreteSchedule(scheduler) if scheduler else spec.schedule)
    prediction = spec.prediction_type or scheduler.get("prediction_type", "epsilon")
    if prediction not in PREDICTION_TYPES:
        raise ValueError(f"{scheduler_path}: prediction_type {prediction!r} is not supported; allowed: epsilon, "
                         "sample, v_prediction (set net.prediction_type to override)")
    clip = spec.clip_sample if spec.clip_sample is not None else bool(scheduler.get("clip_sample", True))
    module.to(device).eval()
    time_map = TimeMap(time_input, schedule if time_input == "discrete" else spec.schedule, spec.time_scale)
    classes = config.get("num_class_embeds")
    denoiser = ForeignDenoiser(module, prediction, time_map, clip, class_labels=bool(classes))
    size = config.get("sample_size")
    shape = None
    if size is not None and "in_channels" in config:
        h, w = (size, size) if isinstance(size, int) else tuple(size)
        shape = (int(config["in_channels"]), int(h), int(w))
    return LoadedNetwork(
        denoiser=denoiser, module=module, raw=denoiser.raw, kind="diffusers", source=str(path), schedule=schedule,
        image_shape=shape, num_classes=int(classes) if classes else None, padding=conv_padding(module),
        description={"class": cls_name, "prediction_type": prediction, "time_input": time_input, "clip_sample": clip,
                     "scheduler": str(scheduler_path) if scheduler_path else None,
                     "schedule": schedule.describe() if isinstance(schedule, DiscreteSchedule) else schedule})


# ---------------------------------------------------------------- any module
def _is_torchscript(path: Path) -> bool:
    if not zipfile.is_zipfile(path):
        return False
    with zipfile.ZipFile(path) as z:
        return any("/code/" in n or n.startswith("code/") for n in z.namelist())


def _load_module(net: nn.Module, source: str, kind: str, spec: NetworkSpec, device) -> LoadedNetwork:
    if not spec.declared or spec.prediction_type is None:
        raise ValueError(f"{source} is a plain module: declare what it predicts and how it takes time, e.g. "
                         "net.prediction_type=epsilon net.time_input=continuous net.schedule=cosine "
                         "(prediction_type: epsilon, sample, v_prediction; time_input: discrete with "
                         "net.beta_schedule or net.alphas_cumprod, continuous, sigma, log_snr, alpha_bar)")
    schedule: Schedule = spec.discrete_schedule() or spec.schedule
    net.to(device).eval()
    time_map = TimeMap(spec.time_input, schedule if spec.time_input == "discrete" else spec.schedule, spec.time_scale)
    denoiser = ForeignDenoiser(net, spec.prediction_type, time_map,
                               spec.clip_sample if spec.clip_sample is not None else True, spec.class_labels)
    return LoadedNetwork(denoiser=denoiser, module=net, raw=denoiser.raw, kind=kind, source=source, schedule=schedule,
                         image_shape=None, num_classes=None, padding=conv_padding(net),
                         description={"prediction_type": spec.prediction_type, "time_input": spec.time_input,
                                      "schedule": schedule.describe() if isinstance(schedule, DiscreteSchedule)
                                      else schedule})

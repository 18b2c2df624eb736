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

import importlib
import json
import re
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping

import torch
from torch import nn

from ablate.models.foreign import PREDICTION_TYPES, ForeignDenoiser, NetworkSpec, TimeMap
from ablate.sampling import Denoiser, DiscreteSchedule, Schedule

FACTORY = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")


@dataclass(frozen=True)
class LoadedNetwork:
    """A network ready to evaluate. denoiser: ``x0_hat = D(x_t, alpha_bar, labels)``. raw: the network's own
    output at ``(x [B, C, H, W], alpha_bar [B], labels)``, for probes. schedule: what it was trained on
    (a continuous schedule's name or a :class:`DiscreteSchedule`). image_shape ``(C, H, W)`` when the
    network says (ablate meta, a diffusers ``sample_size``), else None. train_config: ablate's own runs."""

    denoiser: Denoiser
    module: nn.Module
    raw: Callable[..., torch.Tensor]
    kind: str
    source: str
    schedule: Schedule
    image_shape: tuple[int, int, int] | None
    num_classes: int | None
    padding: str
    train_config: Any = None
    description: dict[str, Any] = field(default_factory=dict)

    def probe(self, image_shape: tuple[int, int, int]):
        """:func:`~ablate.models.probe.probe_network` on canvases as divisible by 2 as images ``(C, H, W)``."""
        from ablate.models.probe import probe_network

        C, H, W = image_shape
        return probe_network(self.module, self.raw, C, self.padding, min(H & -H, W & -W, 32))


def conv_padding(module: nn.Module) -> str:
    """``circular`` when every padded conv pads circularly, else ``zeros`` (the boundary the oracle takes)."""
    modes = {getattr(m, "padding_mode", "zeros") for m in module.modules()
             if isinstance(m, (nn.Conv1d, nn.Conv2d)) and any(int(p) > 0 for p in _padding(m))}
    return "circular" if modes == {"circular"} else "zeros"


def _padding(conv: nn.Module) -> tuple:
    p = getattr(conv, "padding", (0,))
    return (1,) if isinstance(p, str) and p == "same" else (p if isinstance(p, tuple) else (p,) if isinstance(p, int) else (0,))


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
    from ablate.training.checkpoint import load_checkpoint  # the checkpoint format is the training package's

    if spec != NetworkSpec():
        raise ValueError(f"{path} is an ablate checkpoint: it declares its own time input and prediction; "
                         "drop the net.* settings")
    model = load_checkpoint(path, device)
    tc = model.config
    backbone = model.backbone
    return LoadedNetwork(
        denoiser=model.denoiser(), module=backbone, raw=lambda x, ab, labels=None: backbone(x, ab.to(x.dtype), labels),
        kind="ablate", source=str(path), schedule=tc.noise_schedule, image_shape=model.image_shape,
        num_classes=model.num_classes, padding=tc.model.padding, train_config=tc,
        description={"checkpoint": str(path), "step": model.step, "model": tc.model.name})


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


def call_factory(text: str, kwargs: Mapping[str, Any], weights: str | None = None) -> nn.Module:
    """The ``nn.Module`` that ``package.module:factory`` returns for ``kwargs`` (with ``weights`` loaded):
    the one way into a user's module, for loading a network and for training one (``model.name=module``)."""
    module_name, attr = text.split(":")
    try:
        mod = importlib.import_module(module_name)
    except Exception as err:  # ImportError, or the module's own error at import time
        raise ValueError(f"cannot import {module_name!r} of {text!r} ({type(err).__name__}: {err}); the module must "
                         "be importable from the working directory or an installed package") from err
    factory = getattr(mod, attr, None)
    if not callable(factory):
        raise ValueError(f"{module_name!r} has no callable {attr!r}; give package.module:factory")
    try:
        net = factory(**kwargs)
    except TypeError as err:
        raise ValueError(f"{text}(**{dict(kwargs)}) failed: {err}") from err
    if not isinstance(net, nn.Module):
        raise ValueError(f"{text} returned {type(net).__name__}, not a torch.nn.Module")
    if weights is not None:
        net.load_state_dict(_read_weights(weights))
    return net


def _read_weights(path: str) -> dict[str, torch.Tensor]:
    p = Path(path)
    if not p.is_file():
        raise ValueError(f"net.weights {path!r} does not exist")
    try:
        if p.suffix == ".safetensors":
            from safetensors.torch import load_file
            return load_file(str(p))
        state = torch.load(p, map_location="cpu", weights_only=True)
    except Exception as err:
        raise ValueError(f"cannot read weights {path!r} (.safetensors, or a state dict torch.load reads with "
                         f"weights_only=True): {type(err).__name__}: {str(err).splitlines()[0][:200]}") from err
    if not isinstance(state, dict):
        raise ValueError(f"{path} holds {type(state).__name__}, not a state dict")
    return state


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

"""``python -m ablate.design describe MODEL``: what the probes measure on any network, and the machine the
mapping rule predicts for it (before, or instead of, calibrating it)."""
from __future__ import annotations

from typing import Any, Sequence

from ablate.config import apply_overrides, build_config, to_dict
from ablate.models.config import FOREIGN
from ablate.models import Geometry, NetworkSpec, describe, load_denoiser
from ablate.design.mapping import MappingRule, predict_from_geometry


def describe_network(source: str, overrides: Sequence[str] = (), rule: MappingRule | None = None,
                     steps: int = 20) -> dict[str, Any]:
    """Probe ``source`` (anything :func:`~ablate.models.load_denoiser` reads; ``overrides``: ``net.*`` and
    ``data.*``, the data giving the image shape when the network does not) and map it with ``rule``."""
    from ablate.data import DataConfig, load_dataset

    rule = rule or MappingRule()
    for item in overrides:
        if not item.split("=", 1)[0].startswith(("data.", "net.")) or "=" not in item:
            raise ValueError(f"{item!r}: describe takes data.<key>=value and net.<key>=value")
    values = apply_overrides({}, overrides)
    from ablate.evaluation.pipeline import is_token_checkpoint

    if is_token_checkpoint(source):
        return describe_token_model(source)
    loaded = load_denoiser(source, build_config(NetworkSpec, values.get("net"), "net."))
    shape = loaded.image_shape
    if "data" in values:
        shape = load_dataset(build_config(DataConfig, values["data"], "data.")).shape
    if shape is None:
        raise ValueError(f"{source} does not say its image size: name its data (data.name=... data.image_size=...)")
    own = loaded.backbone is not None and loaded.backbone.name not in FOREIGN  # ablate's backbones
    signals = len(shape) == 2  # [C, L]: the probes measure image networks; ablate's 1-D backbones are analytic
    if signals and not own:
        raise ValueError(f"{source} takes signals {list(shape)}; the geometry probes measure image networks "
                         "[C, H, W] only, and a 1-D network's geometry is known analytically for ablate's "
                         "backbones (resnet1d, unet1d, unet_attn1d) alone")
    analytic = describe(loaded.backbone) if own else None
    probe = None if signals else loaded.probe(shape)
    geometry = analytic if probe is None else Geometry(probe.receptive_field, probe.stride or 1, probe.padding,
                                                       probe.local_receptive_field)
    prediction = predict_from_geometry(geometry, shape, rule, steps)
    out = {"network": {"source": loaded.source, "kind": loaded.kind, "image_shape": list(shape), **loaded.description},
           "probe": None if probe is None else probe.as_dict(), "rule": to_dict(rule),
           "prediction": prediction.describe(),
           "oracle": {"machine": prediction.oracle.machine, "boundary": prediction.oracle.boundary,
                      "stride": prediction.oracle.stride, "k_per_step": list(prediction.ks)}}
    if analytic is not None:
        out["analytic"] = {"receptive_field": analytic.receptive_field, "stride": analytic.stride,
                           "local_receptive_field": analytic.local_receptive_field}
    return out


def describe_token_model(source: str) -> dict[str, Any]:
    """A masked-diffusion token model (theory section 12): its analytic receptive field and the discrete machine
    the theory assigns it: ELS with the window its receptive field allows (the largest allowed where it is global),
    at its padding's boundary."""
    from ablate.design.mapping import predict_token_oracle
    from ablate.training.checkpoint import load_checkpoint

    model = load_checkpoint(source)
    L = model.image_shape[0]
    g, oracle = predict_token_oracle(model.config.model, L, int(model.meta["vocab_size"]))
    boundary, k = oracle.boundary, oracle.patch_size
    return {"network": {"source": str(source), "kind": "ablate", "tokens": True, "model": model.config.model.name,
                        "length": L, "vocab_size": model.meta.get("vocab_size")},
            "analytic": {"receptive_field": g.receptive_field, "stride": g.stride,
                         "local_receptive_field": g.local_receptive_field},
            "oracle": {"machine": "els", "boundary": boundary, "k": k}, "probe": None}


def format_description(d: dict[str, Any]) -> str:
    p, o, n = d["probe"], d["oracle"], d["network"]
    if n.get("tokens"):
        a = d["analytic"]
        return "\n".join([f"network: {n['source']} ({n['model']}, token sequences of {n['length']}, "
                          f"V = {n['vocab_size']})",
                          f"  receptive field            {a['receptive_field'] or 'global'} tokens",
                          f"predicted machine (theory section 12): discrete ELS, boundary {o['boundary']}, window "
                          f"k = {o['k']}" + (" (global: the largest the machine allows)"
                                             if a["receptive_field"] is None else "")])
    signals = p is None  # a 1-D network of ablate's: its analytic geometry (equal to the gradient's, tested)
    lines = [f"network: {n['source']} ({n['kind']}{', ' + n['class'] if 'class' in n else ''}), "
             f"{'signals' if signals else 'images'} {'x'.join(map(str, n['image_shape']))}"]
    if not signals:
        rf = "global" if p["receptive_field"] is None else f"{p['receptive_field']} px"
        mixers = ", ".join(p["global_modules"]) or "none found"
        lines += [f"measured (float64 probes, canvas {p['canvas']} px):",
                  f"  receptive field            {rf}",
                  f"  local receptive field      {p['local_receptive_field'] or 'global'} px (convolutional path; "
                  "normalisation statistics and attention cut)",
                  f"  equivariance stride        {p['stride'] or 'none (no shift in 1..32 commutes)'}",
                  f"  padding                    {p['padding']}",
                  f"  global mixing              {'yes' if p['global_mixing'] else 'no'} (a far pixel moves the "
                  f"centre output by {p['global_effect']:.2g} of its size; global modules: {mixers})"]
    if "analytic" in d:
        a = d["analytic"]
        lines.append(f"  ablate's analytic figures  receptive field "
                     f"{a['receptive_field'] or 'global'}{' samples' if signals else ''}, stride {a['stride']}, "
                     f"local {a['local_receptive_field']}" + (" (the probes measure image networks only)"
                                                              if signals else ""))
    r = d["rule"]
    lines += [f"predicted machine (rule: rf_fraction {r['rf_fraction']}, shape {r['shape']}, k_low {r['k_low']}, "
              f"attention/global mixing -> {r['attention']}):",
              f"  {o['machine'].upper()}, boundary {o['boundary']}, stride {o['stride']}, k per step (high noise "
              f"first{', in samples' if signals else ''}): {' '.join(map(str, o['k_per_step']))}"]
    return "\n".join(lines)

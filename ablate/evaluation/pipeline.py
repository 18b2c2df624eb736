"""``evaluate(...)``: how well does the oracle predict what a network generates? (``evaluate.py``)

The network is any denoiser: an ablate checkpoint (:func:`checkpoint_subject`) or any network
:func:`ablate.models.load_denoiser` reads, with the training data it learned (:func:`network_subject`).

1. Calibrate each machine with a scale to the network: one k per DDIM step for ELS and LS, one
   mask threshold per step for PCA locality (:mod:`ablate.evaluation.calibrate`), saved as JSON
   beside the checkpoint.
2. Draw M fixed seeds through each sampler (ablate's DDIM and DDPM with replayed
   noise, or diffusers' schedulers: Euler, Heun, DPM-Solver++, ...) with the
   network and each machine (calibrated ELS and LS; IS as the memorisation
   baseline) and compare per seed (:mod:`ablate.evaluation.agreement`). The first
   sampler gives the headline figures.
3. Write ``agreement.json``, a comparison grid, the per-seed scatter and the
   per-step plot, and log them to W&B.
"""
from __future__ import annotations

import json
import time
import warnings
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, Literal, Sequence

import torch

from ablate import tracking
from ablate.paths import runs_root
from ablate.config import check_choice, check_int, to_dict
from ablate.evaluation.agreement import SamplerAgreement, run_agreement
from ablate.evaluation.calibrate import Calibration, PerLevel, calibrate, calibrate_variants
from ablate.evaluation.plots import comparison_grid, per_step_plot, r2_scatter
from ablate.evaluation.protocols import PROTOCOLS, run_protocols
from ablate.viz import save_grid
from ablate.oracle import MACHINES, OracleConfig, build_oracle, machine_names, nearest_odd, theory
from ablate.sampling import Denoiser, Schedule, release, sampler_name

BANDS = ("high noise", "middle", "low noise")  # the league's noise bands: thirds of the denoiser calls


@dataclass(frozen=True)
class EvalConfig:
    """machines: which to compare (``els`` and ``ls`` are calibrated; ``ideal`` is the IS baseline).
    boundary: ``auto`` follows the network's padding. seeds: M agreement seeds, ``seed_offset ..
    seed_offset + M - 1``; calibration uses ``calibration_seeds`` others. k_max: largest candidate k
    (default: the receptive field, or the image size for a global network); candidates run through every odd
    k up to :data:`DENSE_K`, then about 25% apart, always ending at the top (a deep UNet's receptive field of
    101 pixels takes 19 candidates, not 50). stride: the ELS machine's equivariance stride (theory section 5);
    ``auto`` takes the network's (``2**D`` for a UNet of D stages). recalibrate: ignore a saved calibration
    beside the checkpoint. protocols: also score the calibrated machines as the Analytic Diffusion Studio's and
    GoldDiff's code do (``studio``, ``golddiff``: :mod:`ablate.evaluation.protocols`; ``protocols.md``)."""

    machines: tuple[str, ...] = MACHINES  # every theory: the league table
    boundary: Literal["auto", "zeros", "circular"] = "auto"
    seeds: int = 32
    seed_offset: int = 1000
    calibration_seeds: int = 8
    k_max: int | None = None
    stride: int | Literal["auto"] = 1
    steps: int = 20
    samplers: tuple[str, ...] = ("ddim", "ddpm")
    per_step: bool = True
    recalibrate: bool = False
    protocols: tuple[str, ...] = ()  # the field's protocols too (ablate.evaluation.protocols): studio, golddiff
    wandb_mode: str = "auto"
    progress: bool = True

    def __post_init__(self) -> None:
        if not self.machines:
            raise ValueError("machines is empty; choose some of " + ", ".join(MACHINES))
        for m in self.machines:
            theory(m)  # an unknown name lists the registered theories
        check_choice("boundary", self.boundary, ("auto", "zeros", "circular"))
        check_int("seeds", self.seeds, low=2)
        check_int("seed_offset", self.seed_offset, low=0)
        check_int("calibration_seeds", self.calibration_seeds, low=1)
        check_int("steps", self.steps, low=1)
        if self.k_max is not None:
            check_int("k_max", self.k_max, low=3, odd=True)
        if self.stride != "auto":
            check_int("stride", self.stride, low=1)
        if not self.samplers:
            raise ValueError("samplers is empty; name at least one (the first gives the headline figures)")
        canonical = tuple(sampler_name(s) for s in self.samplers)
        if len(set(canonical)) != len(canonical):
            raise ValueError(f"samplers {list(self.samplers)} name one sampler twice")
        object.__setattr__(self, "samplers", canonical)
        check_choice("wandb_mode", self.wandb_mode, tracking.MODES)
        for p in self.protocols:
            check_choice("protocols", p, PROTOCOLS)
        if len(set(self.protocols)) != len(self.protocols):
            raise ValueError(f"protocols {list(self.protocols)} name one protocol twice")


EVAL_KEYS = tuple(f.name for f in fields(EvalConfig))


def eval_config(overrides: Sequence[str] = (), base: EvalConfig | None = None) -> EvalConfig:
    """``base`` (default: :class:`EvalConfig`'s defaults) with ``key=value`` overrides, by the same machinery as
    ``train.py`` (``seeds=64``, ``machines=[els,ideal]`` or ``machines=els,ideal``, ``k_max=null``); an unknown key
    names the nearest valid one."""
    from ablate.config import apply_overrides, build_config

    for item in overrides:
        if "=" not in item or "." in item.split("=", 1)[0]:
            raise ValueError(f"{item!r}: evaluate.py takes data.<key>=value (the network's training data, as in "
                             "train.py), net.<key>=value (how a foreign network takes time and what it predicts) and "
                             f"EvalConfig's keys as key=value ({', '.join(EVAL_KEYS)})")
    values = apply_overrides(to_dict(base or EvalConfig()), overrides)
    for key in ("machines", "samplers", "protocols"):  # the flags' comma-separated spelling
        if isinstance(values.get(key), str):
            values[key] = [v for v in values[key].split(",") if v]
    return build_config(EvalConfig, values)


@dataclass(frozen=True)
class Subject:
    """What is evaluated: any denoiser, the training set it learned, and how it was built."""

    network: Denoiser
    train_images: torch.Tensor  # [N, C, H, W] in [-1, 1]
    padding: str = "zeros"
    receptive_field: int | None = None
    noise_schedule: Schedule = "cosine"  # a continuous schedule's name or a diffusers DiscreteSchedule
    train_labels: torch.Tensor | None = None
    num_classes: int | None = None
    name: str = "network"
    description: dict[str, Any] = field(default_factory=dict)
    stride: int = 1  # shifts by multiples of it commute with the network


@dataclass(frozen=True)
class EvalResult:
    summary: dict[str, Any]
    path: Path


DENSE_K = 25  # calibration candidates: every odd k up to here, then about 25% apart


def candidates(config: EvalConfig, subject: Subject, machine: str, boundary: str) -> list[int]:
    spatial = subject.train_images.shape[2:]  # (H, W), or (L,) for signals
    allowed = OracleConfig(machine=machine, boundary=boundary).max_patch_size(*spatial)
    # a network without a receptive field (attention, GroupNorm: global) gets every patch the machine allows
    top = min(config.k_max or subject.receptive_field or allowed, allowed)
    top -= 1 - top % 2  # the largest odd k <= top
    ks = list(range(3, min(top, DENSE_K) + 1, 2))
    while ks and ks[-1] < top:
        ks.append(min(top, max(ks[-1] + 2, nearest_odd(1.25 * ks[-1]))))
    return ks or [min(3, allowed)]


def calibration_stride(config: EvalConfig, subject: Subject, machine: str) -> int:
    """The stride the calibrated machine takes (only ELS and equivariant PCA locality have one)."""
    if not theory(machine).patch_knobs:
        return 1
    return subject.stride if config.stride == "auto" else int(config.stride)


def evaluate(subject: Subject, config: EvalConfig, out_dir: str | Path, calibration_dir: str | Path | None = None,
             calibration_stem: str | None = None) -> EvalResult:
    """Calibrate, sample, compare; write ``agreement.json`` and the pictures into ``out_dir``. Calibrations
    are saved as ``<calibration_dir>/<stem>.calibration-<machine>-<boundary>-<T>steps.json`` and reused
    when their seeds and candidates match (unless ``config.recalibrate``)."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    cal_dir = Path(calibration_dir) if calibration_dir is not None else out
    train = subject.train_images
    shape = tuple(train.shape[1:])
    boundary = subject.padding if config.boundary == "auto" else config.boundary
    seeds = list(range(config.seed_offset, config.seed_offset + config.seeds))
    cal_seeds = list(range(config.seed_offset - config.calibration_seeds, config.seed_offset))
    labels = cal_labels = None
    if subject.num_classes:
        labels = torch.tensor(seeds) % subject.num_classes
        cal_labels = torch.tensor(cal_seeds) % subject.num_classes
    say = print if config.progress else (lambda *a, **k: None)
    timings: dict[str, float] = {}

    machines: dict[str, Denoiser] = {}
    calibrations: dict[str, Calibration] = {}
    for name in config.machines:
        stride = calibration_stride(config, subject, name)
        base = build_oracle(OracleConfig(machine=name, boundary=boundary, patch_size=3, stride=stride), train,
                            subject.train_labels)
        scale = theory(name).calibrate  # what is tuned per step: "patch_size" or one of the theory's knobs
        if scale is None:
            machines[name] = base
            continue
        strided = f"-stride{stride}" if stride > 1 else ""
        path = cal_dir / (f"{calibration_stem or subject.name}.calibration-{name}-{boundary}{strided}-"
                          f"{config.steps}steps.json")
        start = time.perf_counter()
        pca = scale != "patch_size"  # a knob (the PCA localities' mask threshold), over the theory's candidates
        values = list(theory(name).candidates) if pca else candidates(config, subject, name, boundary)
        cal = Calibration.load(path, steps=config.steps) if path.exists() and not config.recalibrate else None
        if cal is not None and (list(cal.candidates) != values or list(cal.seeds) != cal_seeds):
            cal = None  # made with other settings
        # one covariance, one copy of the training set, for every threshold
        variants = {tau: base.with_knobs(**{scale: tau}) for tau in values} if pca else None
        if cal is not None:
            say(f"calibration of {name}: reusing {path}", flush=True)
        else:
            what = scale if pca else "k"
            say(f"calibrating {name} ({boundary}) over {what} = {values} on {len(cal_seeds)} seeds ...", flush=True)
            if pca:
                cal = calibrate_variants(subject.network, variants, name, boundary, cal_seeds, shape, config.steps,
                                         subject.noise_schedule, cal_labels, config.progress, train.device)
            else:
                cal = calibrate(subject.network, base, values, cal_seeds, shape, config.steps, subject.noise_schedule,
                                cal_labels, progress=config.progress, device=train.device)
            cal.save(path)
        timings[f"calibrate_{name}"] = time.perf_counter() - start
        calibrations[name] = cal
        machines[name] = PerLevel(variants, cal.alpha_bars, cal.ks) if pca else base.with_patch_size(cal.schedule())
        release(base)  # the calibration's key sets (every candidate's): the league holds one machine's at a time
        say(f"  {scale if pca else 'k'} per step (high noise first): {list(cal.ks)}", flush=True)

    results: dict[str, SamplerAgreement] = {}
    for sampler in config.samplers:
        start = time.perf_counter()
        say(f"{sampler}: network and {', '.join(machines)} on {len(seeds)} seeds ...", flush=True)
        results[sampler] = run_agreement(subject.network, machines, seeds, shape, sampler, config.steps,
                                         subject.noise_schedule, labels, config.per_step, config.progress,
                                         device=train.device)
        timings[f"sample_{sampler}"] = time.perf_counter() - start

    summary = write_outputs(subject, config, out, results, calibrations, seeds, cal_seeds, boundary, timings)
    if config.protocols:  # the Studio's and GoldDiff's own figures, with the calibrated machines
        start = time.perf_counter()
        say(f"protocols {', '.join(config.protocols)}: network and {', '.join(machines)} ...", flush=True)
        summary["protocols"] = run_protocols(config.protocols, subject.network, machines, seeds, shape, out,
                                             subject.name, subject.num_classes, train.device, config.progress)
        summary["figures"]["protocols"] = str(out / "protocols.md")
        summary["seconds"]["protocols"] = time.perf_counter() - start
    path = out / "agreement.json"
    path.write_text(json.dumps(summary, indent=1))
    log_to_wandb(subject, config, out, summary)
    return EvalResult(summary, path)


def write_outputs(subject: Subject, config: EvalConfig, out: Path, results: dict[str, SamplerAgreement],
                  calibrations: dict[str, Calibration], seeds: list[int], cal_seeds: list[int], boundary: str,
                  timings: dict[str, float]) -> dict[str, Any]:
    first = config.samplers[0]
    head = results[first]
    headline = head.summary()
    machine = "els" if "els" in headline else next(iter(headline))

    def r2_of(result: SamplerAgreement):
        return result.per_seed[machine]["r2"].tolist() if machine in result.metrics else None

    figures = {"grid": str(comparison_grid(head.samples, out / f"samples_{first}.png", machine,
                                           title=f"{subject.name}: same seeds, {config.steps}-step {first}",
                                           seeds=seeds, r2=r2_of(head)))}
    if "ideal" in headline and machine != "ideal":
        figures["scatter"] = str(r2_scatter(head.per_seed["ideal"]["r2"], head.per_seed[machine]["r2"],
                                            out / "scatter_r2.png", ylabel=f"{machine.upper()} r²"))
    figures["per_step"] = str(per_step_plot(head.alpha_bars, head.per_step,
                                            {n: (c.alpha_bars, c.ks) for n, c in calibrations.items()
                                             if n in ("els", "ls")},  # patch sizes; PCA's thresholds are in the JSON
                                            out / "per_step.png", title=subject.name))
    summary: dict[str, Any] = {
        "network": {"name": subject.name, "padding": subject.padding, "receptive_field": subject.receptive_field,
                    **subject.description},
        "config": to_dict(config), "boundary": boundary, "seeds": seeds, "calibration_seeds": cal_seeds,
        "headline_sampler": first,
        "noise_schedule": subject.noise_schedule if isinstance(subject.noise_schedule, str)
        else {"discrete": subject.noise_schedule.describe()},
        "r2": "r: Pearson correlation of the mean-centred flattened images (the figure Kamb & Ganguli's code "
              "reports, 0.94 for MNIST ResNets); r2: its square; "
              "R2: coefficient of determination with the network as reference",
        "calibration": {n: {"k": list(c.ks), "alpha_bar": list(c.alpha_bars), "candidates": list(c.candidates)}
                        for n, c in calibrations.items()},
        **headline,
        "samplers": {s: r.summary() for s, r in results.items() if s != first},
        "league": league(headline),
        "figures": figures, "seconds": timings,
    }
    if len(head.samples) > 2:
        names = [n for n in summary["league"]["by_median_r"]]
        rows = [head.samples["network"][:12]] + [head.samples[n][:12] for n in names]
        titles = ["network"] + [n.upper() if n != "ideal" else "IS" for n in names]
        figures["league"] = str(save_grid(rows, titles, out / "league.png", cell_titles={0: [f"seed {s}" for s in seeds[:12]]},
                                          title=f"{subject.name}: every theory from the same seeds, best first"))
    for sampler, r in results.items():
        if sampler != first:
            figures[f"grid_{sampler}"] = str(comparison_grid(r.samples, out / f"samples_{sampler}.png", machine,
                                                             title=f"{subject.name}: same seeds and noise, {sampler}",
                                                             seeds=seeds, r2=r2_of(r)))
    return summary


def league(headline: dict[str, Any]) -> dict[str, Any]:
    """Which theory explains the network best: machines sorted by median ``r`` of the final samples, and per
    noise band (thirds of the denoiser calls, high noise first) the machine with the highest mean per-step
    ``R2`` of ``x0_hat`` on the network's trajectory (the figure Lukoianov et al. and the Studio report)."""
    ranked = sorted(headline, key=lambda n: -headline[n]["median_r"])
    out: dict[str, Any] = {"by_median_r": ranked, "best": ranked[0] if ranked else None, "bands": {}}
    steps = {n: headline[n].get("per_step_median_R2") or [] for n in headline}
    T = max((len(v) for v in steps.values()), default=0)
    if T >= 3:
        for b, band in enumerate(BANDS):
            lo, hi = b * T // 3, (b + 1) * T // 3
            means = {n: sum(v[lo:hi]) / (hi - lo) for n, v in steps.items() if len(v) == T}
            best = max(means, key=means.get)
            out["bands"][band] = {"best": best, "mean_R2": means}
    return out


def wandb_media(figures: dict[str, str]) -> dict[str, Any]:
    """W&B media for the evaluation's figures: pictures as images, tables (``protocols.md``) as preformatted
    text (W&B cannot open a Markdown file as an image)."""
    import html

    import wandb

    out: dict[str, Any] = {}
    for key, path in figures.items():
        if Path(path).suffix.lower() in (".png", ".jpg", ".jpeg", ".gif"):
            out[f"figures/{key}"] = wandb.Image(path)
        else:
            out[f"figures/{key}"] = wandb.Html(f"<pre>{html.escape(Path(path).read_text())}</pre>")
    return out


def log_to_wandb(subject: Subject, config: EvalConfig, out: Path, summary: dict[str, Any]) -> None:
    mode = tracking.resolve_mode(config.wandb_mode)
    if mode == "disabled":
        return
    import wandb

    try:
        run = wandb.init(project="ablate", group=subject.name, job_type="evaluate", name=f"eval-{subject.name}",
                         dir=str(out), mode=mode, config={"eval": to_dict(config), "network": summary["network"]})
        scalars = {f"{m}/{k}": v for m in machine_names() if m in summary for k, v in summary[m].items()
                   if isinstance(v, float)}
        run.log({**scalars, **wandb_media(summary["figures"])})
        run.summary.update(scalars)
    finally:
        tracking.finish()


def local_receptive_field(backbone) -> int | None:
    """What calibration scales: the measured local receptive field of a diffusers UNet or a user's module
    (its GroupNorm or attention would make the whole image the limit), ablate's analytic one otherwise."""
    if hasattr(backbone, "geometry"):
        return backbone.geometry().local_receptive_field
    return backbone.receptive_field()


def checkpoint_subject(checkpoint: str | Path, data=None, device: str | torch.device = "cpu") -> Subject:
    """A training checkpoint (EMA weights) as a :class:`Subject`, with the training set of its config
    (``data``: that dataset, already loaded, to skip loading it again), network and training images on
    ``device`` (so the evaluation's oracles and sampler run there too)."""
    from ablate.data import load_dataset
    from ablate.training import load_checkpoint

    model = load_checkpoint(checkpoint, device)
    tc = model.config
    data = data if data is not None else load_dataset(tc.data)
    run_dir = Path(checkpoint).resolve().parent.parent
    labels = data.train_labels.to(device) if model.num_classes else None
    return Subject(
        network=model.denoiser(), train_images=data.train.to(device), padding=tc.model.padding, stride=tc.model.stride,
        receptive_field=local_receptive_field(model.backbone), noise_schedule=tc.noise_schedule,
        train_labels=labels, num_classes=model.num_classes,
        name=run_dir.name, description={"checkpoint": str(checkpoint), "step": model.step,
                                        "model": to_dict(tc.model), "data": to_dict(tc.data)})


def network_subject(loaded, data, device: str | torch.device = "cpu", data_config: Any = None) -> Subject:
    """Any network :func:`ablate.models.load_denoiser` read, as a :class:`Subject` over ``data`` (an
    :class:`~ablate.data.ImageDataset`, the images it was trained on). Checks that the network fits the data
    (channels, its declared size, one forward pass) and probes its geometry (:mod:`ablate.models.probe`):
    the calibration candidates run up to its *local* receptive field."""
    if len(data.shape) != 3:
        raise ValueError(f"data {data.name!r} holds signals {list(data.shape)}; users' own networks are evaluated on "
                         "images [C, H, W] (the geometry probes measure image networks); ablate's 1-D checkpoints "
                         "(resnet1d, unet1d, unet_attn1d) evaluate on signals")
    C, H, W = data.shape
    shape = loaded.image_shape
    if shape is not None and shape[0] != C:
        raise ValueError(f"the network takes {shape[0]}-channel images but data {data.name!r} has {C} channels; "
                         f"name the data it was trained on (data.name=..., data.channels=...)")
    if shape is not None and tuple(shape[1:]) != (H, W):
        raise ValueError(f"the network was built for {shape[1]}x{shape[2]} images (its sample_size) but data "
                         f"{data.name!r} is {H}x{W}; set data.image_size={shape[1]} (or the data it was trained on)")
    if loaded.num_classes is not None and data.num_classes is None:
        raise ValueError(f"the network is class-conditional ({loaded.num_classes} classes) but data {data.name!r} "
                         "has no labels")
    try:
        loaded.denoiser.denoise(data.train[:1].to(device), 0.5)
    except ValueError:
        raise
    except Exception as err:  # the user's network, any error
        raise ValueError(f"the network cannot run on data {data.name!r} of shape {C}x{H}x{W}: "
                         f"{type(err).__name__}: {str(err).splitlines()[0][:300]}") from err
    try:
        probe = loaded.probe(data.shape).as_dict()
    except Exception as err:  # a network that only takes its own image size, or is not differentiable
        probe = {"error": f"{type(err).__name__}: {str(err).splitlines()[0][:300]}", "local_receptive_field": None}
        warnings.warn(f"could not probe the network's geometry ({probe['error']}); calibrating over every patch "
                      "size the machine allows", stacklevel=2)
    labels = data.train_labels.to(device) if loaded.num_classes else None
    name = Path(loaded.source).name if Path(loaded.source).exists() else loaded.source.replace(":", "-")
    return Subject(network=loaded.denoiser, train_images=data.train.to(device), padding=loaded.padding,
                   stride=probe.get("stride") or 1, receptive_field=probe["local_receptive_field"], noise_schedule=loaded.schedule,
                   train_labels=labels, num_classes=loaded.num_classes, name=name,
                   description={"source": loaded.source, "kind": loaded.kind, **loaded.description,
                                "probe": probe,
                                "data": to_dict(data_config) if data_config is not None
                                else {"name": data.name, "shape": list(data.shape), "n": len(data.train)}})


def evaluate_source(source: str, overrides: Sequence[str] = (), config: EvalConfig | None = None,
                    out_dir: str | Path | None = None, device: str | torch.device = "cpu") -> EvalResult:
    """Evaluate any network (``evaluate.py MODEL key=value ...``). ``overrides``: ``data.*`` (the training
    data of a network that did not come from ablate, with ``train.py``'s keys) and ``net.*`` (its
    :class:`~ablate.models.NetworkSpec`). Outputs go to ``out_dir``, else ``<run>/evaluation`` for an ablate
    checkpoint, ``<folder>/evaluation`` for a diffusers folder, ``runs/evaluate/<name>`` otherwise."""
    from ablate.config import apply_overrides, build_config
    from ablate.data import DataConfig, load_dataset
    from ablate.models import NetworkSpec, load_denoiser

    config = config or EvalConfig()
    for item in overrides:
        if "=" not in item or not item.split("=", 1)[0].startswith(("data.", "net.")):
            raise ValueError(f"{item!r}: evaluate.py takes data.<key>=value (the network's training data, as in "
                             "train.py) and net.<key>=value (how a foreign network takes time and what it predicts)")
    values = apply_overrides({}, overrides)
    if is_token_checkpoint(source):
        if values:
            raise ValueError(f"{source} is an ablate token model: it is evaluated on the data it was trained on; drop "
                             "the data.* and net.* settings")
        from ablate.evaluation.text import evaluate_tokens

        return evaluate_tokens(source, config, out_dir)
    spec = build_config(NetworkSpec, values.get("net"), "net.")
    loaded = load_denoiser(source, spec, device)
    if loaded.kind == "ablate":
        if "data" in values:
            raise ValueError(f"{source} is an ablate checkpoint: it is evaluated on the data it was trained on; "
                             "drop the data.* settings")
        return evaluate_checkpoint(source, config, out_dir)
    if "data" not in values:
        raise ValueError(f"{source} did not come from ablate: name the data it was trained on with train.py's keys, "
                         "e.g. data.name=mnist5k data.n=200 data.image_size=14")
    data_config = build_config(DataConfig, values["data"], "data.")
    subject = network_subject(loaded, load_dataset(data_config), device, data_config)
    path = Path(source)
    out = Path(out_dir) if out_dir is not None else (path / "evaluation" if path.is_dir()
                                                    else runs_root() / "evaluate" / subject.name)
    return evaluate(subject, config, out)


def is_token_checkpoint(source: str | Path) -> bool:
    """Whether ``source`` is an ablate checkpoint of a masked-diffusion token model (theory section 12)."""
    from ablate.models.checkpoint import read_checkpoint
    from ablate.models.config import TOKEN_BACKBONES

    path = Path(source)
    if not (path.is_file() and path.suffix == ".ckpt"):
        return False
    ckpt = read_checkpoint(path)
    return (ckpt.get("ablate", {}).get("config", {}).get("model") or {}).get("name") in TOKEN_BACKBONES


def evaluate_checkpoint(checkpoint: str | Path, config: EvalConfig | None = None,
                        out_dir: str | Path | None = None, subject: Subject | None = None) -> EvalResult:
    """Evaluate a training checkpoint (EMA weights) against the oracle over its own training set
    (``subject``: the checkpoint already loaded by :func:`checkpoint_subject`). Outputs go to
    ``<run>/evaluation/`` unless ``out_dir`` says otherwise; calibrations beside the checkpoint."""
    config = config or EvalConfig()
    subject = subject or checkpoint_subject(checkpoint)
    run_dir = Path(checkpoint).resolve().parent.parent
    return evaluate(subject, config, out_dir or run_dir / "evaluation", calibration_dir=Path(checkpoint).parent,
                    calibration_stem=Path(checkpoint).stem)

"""``evaluate.py`` on a token model (theory section 12): how well do the discrete machines predict what a masked-
diffusion network writes?

1. **Calibration.** The network unmasks ``calibration_seeds`` seeds; at each step, on its own trajectory, every
   candidate ``k`` of LS and ELS (both boundaries) is scored by the mean total-variation distance between the
   machine's and the network's posteriors at the masked positions; the closest ``k`` is that step's.
2. **League.** The network and every machine unmask the same ``seeds`` with the same reveal and token uniforms
   (:func:`~ablate.sampling.unmask`): IS, LS and ELS at both boundaries (calibrated), and two free baselines,
   a unigram model (each masked token from the training tokens' frequencies) and a bigram model (from the left
   neighbour's, where it is observed).
3. **Agreement.** Per seed, the fraction of positions where the machine's final token equals the network's, with
   a bootstrap 95% interval over seeds, against chance (the sum of the squared training token frequencies: what
   two independent draws from the token frequencies share); per step, the TV distance on the network's
   trajectory. Text metrics (:mod:`ablate.metrics.text`) of every model's samples.
4. **Pictures.** ``samples.html``: each seed's text from the network and every machine side by side, the
   symbols that differ from the network's marked; ``per_step.png``: TV distance per step.
"""
from __future__ import annotations

import html
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch

from ablate.data import load_dataset
from ablate.data.tokens import TokenDataset, decode
from ablate.metrics.text import text_scores
from ablate.oracle import OracleConfig, TokenOracle, build_oracle
from ablate.sampling import unmask

BOOTSTRAP = 2000


@dataclass(frozen=True)
class TokenEvalResult:
    """What ``evaluate.py`` returns for a token model: the summary (``kind: tokens``) and agreement.json's path."""

    summary: dict[str, Any]
    path: Path


class FrequencyDenoiser:
    """Free baselines: ``unigram`` (a masked token from the training tokens' frequencies) or ``bigram`` (from
    the frequencies of tokens that follow its left neighbour, where that is observed; a start symbol before
    position 0; else the unigram), counts plus ``smoothing``."""

    def __init__(self, train: torch.Tensor, vocab_size: int, order: str = "unigram", smoothing: float = 1.0) -> None:
        if order not in ("unigram", "bigram"):
            raise ValueError(f"order={order!r}; allowed: unigram, bigram")
        self.vocab_size, self.order = vocab_size, order
        V = vocab_size
        counts = torch.bincount(train.flatten(), minlength=V).double()
        self.unigram = (counts + smoothing) / (counts.sum() + smoothing * V)
        start = torch.full((len(train), 1), V, dtype=torch.long)  # the start symbol takes the mask's id
        prev = torch.cat([start, train[:, :-1]], 1)
        pairs = torch.zeros(V + 1, V, dtype=torch.float64)
        pairs.index_put_((prev.flatten(), train.flatten()), torch.ones(train.numel(), dtype=torch.float64),
                         accumulate=True)
        self.bigram = (pairs + smoothing) / (pairs.sum(1, keepdim=True) + smoothing * V)  # [V + 1, V]

    def denoise(self, x_t: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
        B, L = x_t.shape
        V = self.vocab_size
        post = self.unigram[None, None].expand(B, L, V).clone()
        if self.order == "bigram":
            prev = torch.cat([torch.full((B, 1), -1, dtype=torch.long), x_t[:, :-1]], 1)
            prev = torch.where(prev < 0, torch.full_like(prev, V), prev)  # position 0: the start symbol
            known = (prev < V) | (torch.arange(L)[None] == 0)
            post = torch.where(known[..., None], self.bigram[prev], post)
        observed = x_t < V
        onehot = torch.nn.functional.one_hot(x_t.clamp(max=V - 1), V).double()
        return torch.where(observed[..., None], onehot, post).transpose(1, 2).float()


class StepMachine:
    """A token machine whose patch size follows one ``k`` per sampler step (a calibration), looked up by the
    step's ``alpha``."""

    def __init__(self, oracle: TokenOracle, alphas: Sequence[float], ks: Sequence[int]) -> None:
        self.oracle, self.vocab_size = oracle, oracle.vocab_size
        self.by_alpha = {round(float(a), 12): int(k) for a, k in zip(alphas, ks)}

    def denoise(self, x_t: torch.Tensor, alpha: float | torch.Tensor) -> torch.Tensor:
        k = self.by_alpha.get(round(float(alpha), 12))
        if k is None:
            raise ValueError(f"alpha={float(alpha)} is not a step of this calibration's sampler")
        return self.oracle.with_patch_size(k).denoise(x_t, alpha)


def tv_distance(p: torch.Tensor, q: torch.Tensor, masked: torch.Tensor) -> float:
    """Mean over the ``masked`` positions ``[B, L]`` of half the L1 distance between posteriors ``[B, V, L]``."""
    if not masked.any():
        return float("nan")
    d = 0.5 * (p.double() - q.double()).abs().sum(1)  # [B, L]
    return float(d[masked].mean())


def candidates_for(oracle: TokenOracle, config: OracleConfig, length: int) -> list[int]:
    return list(range(1, config.max_patch_size(length) + 1, 2))


def posteriors(network, trajectory: torch.Tensor, alphas: Sequence[float]) -> list[torch.Tensor]:
    """The network's ``x0_hat`` ``[S, V, L]`` at each step of its own trajectory ``[T, S, L]`` (computed once, then
    compared with every machine)."""
    return [network.denoise(x, a).cpu() for x, a in zip(trajectory, alphas)]


def calibrate(network_posteriors: Sequence[torch.Tensor], oracle: TokenOracle, trajectory: torch.Tensor,
              alphas: Sequence[float], ks: Sequence[int]) -> tuple[list[int], list[list[float]]]:
    """One ``k`` per step (the smallest TV distance to the network's posteriors on its own trajectory ``[T, S, L]``)
    and the distances ``[T][len(ks)]``."""
    V = oracle.vocab_size
    chosen, table = [], []
    for x, a, net in zip(trajectory, alphas, network_posteriors):
        masked = x == V
        row = [tv_distance(oracle.with_patch_size(k).denoise(x, a), net, masked) for k in ks]
        table.append(row)
        chosen.append(int(ks[int(np.nanargmin(row))]) if not all(np.isnan(row)) else int(ks[0]))
    return chosen, table


def bootstrap_mean(values: Sequence[float], seed: int = 0) -> tuple[float, float, float]:
    v = np.asarray(values, float)
    rng = np.random.default_rng(seed)
    means = v[rng.integers(0, len(v), size=(BOOTSTRAP, len(v)))].mean(1)
    return float(v.mean()), float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def chance_agreement(train: torch.Tensor, vocab_size: int) -> float:
    """The agreement of two independent draws from the training token frequencies: ``sum_v f_v^2``."""
    f = torch.bincount(train.flatten(), minlength=vocab_size).double()
    f = f / f.sum()
    return float((f * f).sum())


def league(data: TokenDataset, network, receptive_field: int | None, config, progress: bool) -> dict[str, Any]:
    """Calibrate, sample every machine from the same seeds and measure (see the module's docstring). ``config``
    is the :class:`~ablate.evaluation.EvalConfig` (seeds, seed_offset, calibration_seeds, steps)."""
    V, L = data.vocab_size, data.shape[0]
    steps = config.steps
    cal_seeds = list(range(config.seed_offset + 10**6, config.seed_offset + 10**6 + config.calibration_seeds))
    seeds = list(range(config.seed_offset, config.seed_offset + config.seeds))
    cal = unmask(network, cal_seeds, L, steps)
    run = unmask(network, seeds, L, steps)
    cal_net, run_net = posteriors(network, cal.trajectory, cal.alphas), posteriors(network, run.trajectory, run.alphas)
    machines: dict[str, Any] = {"unigram": FrequencyDenoiser(data.train, V, "unigram"),
                                "bigram": FrequencyDenoiser(data.train, V, "bigram"),
                                "ideal": build_oracle(OracleConfig(machine="ideal", vocab_size=V), data.train)}
    calibration = {}
    for machine in ("ls", "els"):
        for boundary in ("zeros", "circular"):
            oc = OracleConfig(machine=machine, boundary=boundary, patch_size=1, vocab_size=V)
            oracle = build_oracle(oc, data.train)
            ks = candidates_for(oracle, oc, L)
            chosen, table = calibrate(cal_net, oracle, cal.trajectory, cal.alphas, ks)
            name = f"{machine}_{boundary}"
            calibration[name] = {"k": chosen, "candidates": ks, "tv": table, "alpha": list(cal.alphas)}
            machines[name] = StepMachine(oracle, cal.alphas, chosen)
            if progress:
                print(f"calibrated {name}: k per step {' '.join(map(str, chosen))}", flush=True)
    chance = chance_agreement(data.train, V)
    out: dict[str, Any] = {"kind": "tokens", "dataset": data.name, "vocab_size": V, "length": L, "steps": steps,
                           "seeds": seeds, "chance_agreement": chance, "receptive_field": receptive_field,
                           "calibration": calibration, "network": text_scores(data, run.tokens), "machines": {}}
    texts = {"network": decode(run.tokens, data.vocab)}
    for name, machine in machines.items():
        sampled = unmask(machine, seeds, L, steps)
        agree = (sampled.tokens == run.tokens).double().mean(1).tolist()
        mean, low, high = bootstrap_mean(agree)
        per_step = []
        for x, a, net in zip(run.trajectory, run.alphas, run_net):
            per_step.append(tv_distance(machine.denoise(x, a), net, x == V))
        out["machines"][name] = {"agreement": mean, "agreement_ci95": [low, high], "agreement_per_seed": agree,
                                 "above_chance": mean - chance, "exact_samples": float(np.mean([a == 1.0 for a in agree])),
                                 "tv_per_step": per_step, "mean_tv": float(np.nanmean(per_step)),
                                 "text": text_scores(data, sampled.tokens)}
        texts[name] = decode(sampled.tokens, data.vocab)
        if progress:
            print(f"{name:15} token agreement {mean:.3f} [{low:.3f}, {high:.3f}] (chance {chance:.3f}), "
                  f"mean TV {out['machines'][name]['mean_tv']:.3f}", flush=True)
    ranked = sorted(out["machines"], key=lambda m: -out["machines"][m]["agreement"])
    out["ranking"] = ranked
    out["texts"] = texts
    return out


def samples_html(summary: dict[str, Any], path: Path, rows: int = 64) -> Path:
    """Each seed's text from the network and every machine; symbols that differ from the network's marked."""
    names = ["network"] + summary["ranking"]
    texts = summary["texts"]
    head = "".join(f"<th>{html.escape(n)}<br><small>{summary['machines'][n]['agreement']:.2f}</small></th>"
                   if n != "network" else "<th>network</th>" for n in names)
    body = []
    for i, seed in enumerate(summary["seeds"][:rows]):
        ref = texts["network"][i]
        cells = []
        for n in names:
            t = texts[n][i]
            marked = "".join(html.escape(c) if n == "network" or (j < len(ref) and ref[j] == c)
                             else f"<mark>{html.escape(c)}</mark>" for j, c in enumerate(t))
            if n != "network" and len(t) < len(ref):
                marked += f"<mark>{'&middot;' * (len(ref) - len(t))}</mark>"
            cells.append(f"<td>{marked or '&nbsp;'}</td>")
        body.append(f"<tr><td>{seed}</td>{''.join(cells)}</tr>")
    page = ("<!doctype html><meta charset='utf-8'><title>samples from the same seeds</title><style>body{font-family:"
            "sans-serif}td,th{font-family:monospace;padding:2px 8px;border-bottom:1px solid #ddd}mark{background:"
            "#fbb}</style>"
            f"<h2>{html.escape(summary['dataset'])}: the network and every machine from the same seeds</h2>"
            "<p>Marked: where a machine's symbol differs from the network's (a dot: it ended early). Under each name, "
            f"its per-seed token agreement with the network (chance {summary['chance_agreement']:.2f}).</p>"
            f"<table><tr><th>seed</th>{head}</tr>{''.join(body)}</table>")
    path.write_text(page, encoding="utf-8")
    return path


def per_step_plot(summary: dict[str, Any], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    for name in summary["ranking"]:
        ax.plot(range(1, summary["steps"] + 1), summary["machines"][name]["tv_per_step"], marker="o", ms=3,
                label=name)
    ax.set_xlabel("unmasking step (1: all masked)")
    ax.set_ylabel("TV distance to the network")
    ax.set_title("per step, on the network's trajectory (lower: closer)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def evaluate_tokens(checkpoint: str | Path, config, out_dir: str | Path | None = None, model=None,
                    data: TokenDataset | None = None):
    """Evaluate a token model's checkpoint (EMA weights) against the discrete machines over its own training
    set; outputs to ``<run>/evaluation/`` unless ``out_dir``. ``model`` (its :func:`load_checkpoint`) and ``data``
    (its training data): already loaded by the caller."""
    from ablate.training.checkpoint import load_checkpoint

    model = model or load_checkpoint(checkpoint)
    data = data or load_dataset(model.config.data)
    if not isinstance(data, TokenDataset) or data.vocab_size != model.meta.get("vocab_size"):
        raise ValueError(f"checkpoint {str(checkpoint)!r} was trained on a vocabulary of {model.meta.get('vocab_size')} "
                         "tokens, which its data config no longer gives")
    out = Path(out_dir) if out_dir is not None else Path(checkpoint).resolve().parent.parent / "evaluation"
    out.mkdir(parents=True, exist_ok=True)
    summary = league(data, model.denoiser(), model.backbone.receptive_field(), config, config.progress)
    summary["checkpoint"] = str(checkpoint)
    summary["model"] = model.config.model.name
    summary["figures"] = {"samples": str(samples_html(summary, out / "samples.html")),
                          "per_step": str(per_step_plot(summary, out / "per_step.png"))}
    path = out / "agreement.json"
    path.write_text(json.dumps(summary, indent=1))
    return TokenEvalResult(summary, path)

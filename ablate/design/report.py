"""The design-before-training report: markdown and HTML with PNGs, in the run directory and in W&B.

Per dataset: the Spearman figures against the bar (the held-out architectures', with bootstrap 95%
intervals, where the study has a fit set; the fit rows' and all rows' beside them), the rule with its fit
set and commit, where the artefacts are against chance, for every architecture whose calibrated ELS ``r`` is
under 0.8 a measured explanation (:func:`agreement_explanation`: which noise levels, and whether ES or IS
explains the network better there), the cost of each phase, the table of every
architecture by role (geometry, the rule's schedule, the calibrated one, predicted and measured figures,
agreement with ELS, ES and IS), the free baselines beside the oracle (:mod:`ablate.design.baselines`: every
free ranking, the levels' errors, the data-size axis), the per-seed figures (:mod:`ablate.design.seeds`), and the
pictures (:mod:`ablate.design.plots`); ``report.json`` beside them (:mod:`ablate.design.export`).
"""
from __future__ import annotations

import base64
import html
import json
import math
from pathlib import Path
from typing import Any

from ablate.design.compare import BAR, GATED, Comparison
from ablate.design.export import report_data
from ablate.design.plots import axis_plot, floats, per_step_plot, samples_plot, scatter_plot

COLUMNS = [  # (key in a row, header, format)
    ("label", "architecture", "{}"), ("role", "role", "{}"), ("grid", "grid", "{}"), ("n", "n", "{}"),
    ("parameters", "parameters", "{:,}"), ("receptive_field", "RF", "{}"),
    ("local_receptive_field", "local RF", "{}"), ("stride", "stride", "{}"),
    ("boundary", "boundary", "{}"), ("k_schedule", "rule's k (high noise first)", "{}"),
    ("els_k", "calibrated k", "{}"),
    ("predicted_coherence", "coherence pred.", "{:.3f}"), ("coherence", "coherence trained", "{:.3f}"),
    ("predicted_artefact_rate", "artefacts pred.", "{:.3f}"), ("artefact_rate", "artefacts trained", "{:.3f}"),
    ("predicted_conditional_artefact_rate", "wrong count among hands pred.", "{:.3f}"),
    ("conditional_artefact_rate", "wrong count among hands trained", "{:.3f}"),
    ("predicted_fidelity", "fidelity pred.", "{:.3f}"), ("fidelity", "fidelity trained", "{:.3f}"),
    ("predicted_novelty", "novelty pred.", "{:.3f}"), ("novelty", "novelty trained", "{:.3f}"),
    ("predicted_memorisation_rate", "memorisation pred.", "{:.3f}"), ("memorisation_rate", "memorisation trained",
                                                                       "{:.3f}"),
    ("prediction_r2", "r² pred. vs trained", "{:.3f}"), ("els_r", "calibrated ELS r", "{:.3f}"),
    ("els_r2", "calibrated ELS r²", "{:.3f}"), ("es_r2", "ES r²", "{:.3f}"), ("is_r2", "IS r²", "{:.3f}"),
    ("artefact_hit_rate", "artefact hit rate", "{:.2f}"), ("artefact_hit_rate_chance", "hit rate, mismatched seeds",
                                                           "{:.2f}"),
    ("artefact_map_iou", "artefact map IoU", "{:.2f}"), ("artefact_map_iou_chance", "IoU, mismatched seeds", "{:.2f}"),
    ("prediction_seconds", "predict s", "{:.1f}"), ("train_seconds", "train s", "{:.1f}"),
]
ROLE_NAMES = {"held_out": "held-out", "fit": "fit (in-sample)", "all": "all"}


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    v = row.get(key)
    if v is None or (isinstance(v, float) and math.isnan(v)):
        return "–"
    return fmt.format(v)


def _range(values: list[float]) -> str:
    lo, hi = f"{min(values):.2f}", f"{max(values):.2f}"
    return lo if lo == hi else f"{lo}-{hi}"


def _span(alpha_bars: list[float], steps: list[int]) -> str:
    lo, hi = min(alpha_bars[i] for i in steps), max(alpha_bars[i] for i in steps)
    return f"alpha_bar {lo:.2g}" if lo == hi else f"alpha_bar {lo:.2g}-{hi:.2g}"


def agreement_explanation(row: dict[str, Any], bar: float = BAR, margin: float = 0.02) -> str | None:
    """A measured account of an architecture whose calibrated ELS ``r`` (final samples from the same seeds) is
    under ``bar``, from the per-step figures (each machine's x0_hat against the network's, on the network's own
    trajectory): the noise levels where ELS falls under ``bar**2`` in r²; where ES or IS explains the network
    better (by more than ``margin`` in r², and itself at least ``bar**2``): what it does instead; otherwise,
    that no machine here does, and that the final samples part because per-step differences compound along the
    trajectory. None for an architecture at or over the bar."""
    r = row.get("els_r")
    if not isinstance(r, float) or math.isnan(r) or r >= bar:
        return None
    els, alpha_bars = floats(row, "els_r2_by_step"), floats(row, "els_alpha_bar")
    head = f"**{row.get('arch')}** (calibrated ELS r {r:.2f} on the final samples)"
    if not els or len(alpha_bars) != len(els):
        return f"{head}: no per-step figures to explain it"
    weak = [i for i, v in enumerate(els) if v < bar ** 2]
    rest = [v for i, v in enumerate(els) if i not in weak]
    if weak:
        parts = [f"per step, ELS r² is under {bar ** 2:.2f} at {len(weak)} of {len(els)} steps "
                 f"({_span(alpha_bars, weak)}: {_range([els[i] for i in weak])})"
                 + (f" and {_range(rest)} at the others" if rest else "")]
    else:
        parts = [f"per step, ELS explains every noise level (r² {_range(els)})"]
    largest = floats(row, "els_candidates")
    instead = False
    for key, name, meaning in (("es_r2_by_step", "ES", "is global but still shift-equivariant"),
                               ("is_r2_by_step", "IS", "draws on whole training images, as the ideal denoiser does")):
        other = floats(row, key)
        if len(other) != len(els):
            continue
        better = [i for i in range(len(els)) if other[i] > els[i] + margin and other[i] >= bar ** 2]
        if better:
            instead = True
            cap = f" (calibration candidates up to k = {int(largest[-1])})" if largest and name == "ES" else ""
            steps = f"{len(better)} step{'s' * (len(better) != 1)}"
            parts.append(f"{name} explains it better at {steps} ({_span(alpha_bars, better)}: r² "
                         f"{_range([other[i] for i in better])} against ELS {_range([els[i] for i in better])}): "
                         f"there the network {meaning}{cap}")
    if not instead:
        parts.append("neither ES nor IS explains it better at any step, so the final samples part "
                     + ("where ELS fails and " if weak else "") + "because the per-step differences compound "
                     "along the trajectory")
    return f"{head}: " + "; ".join(parts)


def _rho(corr) -> str:
    if math.isnan(corr.rho) and corr.n < 3:
        return f"undefined ({corr.n} architectures with both figures; a rank correlation needs at least 3)"
    if math.isnan(corr.rho):
        return "undefined (constant across the grid)"
    ci = "" if math.isnan(corr.low) else f", 95% bootstrap interval [{corr.low:.2f}, {corr.high:.2f}]"
    p = "p < 0.001" if corr.p_value < 1e-3 else f"p = {corr.p_value:.3g}"
    return f"{corr.rho:.2f} ({p}, {corr.n} architectures{ci})"


def verdict(c: Comparison) -> list[str]:
    lines = []
    if c.headline == "held-out":
        lines.append(f"- **held-out architectures** ({len(c.rows) - sum(r.get('role') == 'fit' for r in c.rows)}; "
                     "none played a part in fitting the rule):")
    for m, corr in c.correlations.items():
        gate = f" (bar: ≥ {BAR})" if m in GATED else ""
        mark = ("meets" if corr.meets_bar else "not decided yet" if corr.n < 3 else "misses") if m in GATED \
            else "reported"
        noise = ""
        if m in GATED and not math.isnan(corr.ceiling):  # how far seed noise alone lets any predictor go
            noise = (f"; a perfect predictor at these seed counts reaches median ρ {corr.ceiling:.2f} "
                     f"(≥ {BAR} in {corr.ceiling_at_bar:.0%} of draws)")
        lines.append(f"- **{m}**: Spearman ρ = {_rho(corr)}{gate}: {mark}{noise}")
    for role in ("fit", "all"):
        if c.headline == "held-out" and role in c.by_role:
            shown = ", ".join(f"{m} {corr.rho:.2f}" for m, corr in c.by_role[role].items() if not math.isnan(corr.rho))
            lines.append(f"- {ROLE_NAMES[role]} rows: ρ {shown or 'undefined'}")
    held = [r for r in c.rows if r.get("role", "held_out") != "fit" and "artefact_hit_rate" in r]
    if held and c.per_seed is None:  # else pooled over seeds, with intervals (per_seed_lines)
        def mean(key):
            v = [r[key] for r in held if isinstance(r.get(key), float) and not math.isnan(r[key])]
            return f"{sum(v) / len(v):.2f}" if v else "–"
        lines.append(f"- **where**: the oracle's artefact touches the network's on {mean('artefact_hit_rate')} of the "
                     f"seeds where the network made one (mismatched seeds, chance: {mean('artefact_hit_rate_chance')});"
                     f" map IoU {mean('artefact_map_iou')} (chance {mean('artefact_map_iou_chance')}); means over "
                     "architectures")
    for row in c.rows:
        explained = agreement_explanation(row)
        if explained is not None:
            lines.append(f"- **ELS r under {BAR}**: {explained}")
    if c.rule is not None:
        r = c.rule
        fit = ", ".join(f"{m['name']} (rms {m['rms_error']:.2f} in k)" for m in r.get("fit_set", []))
        lines.append(f"- **rule** ({r.get('path')}): {r['rule']}; fitted on {fit or 'an empty fit set'} at commit "
                     f"{r.get('commit') or 'unknown'}")
    seeds = {(r.get("prediction_seeds"), r.get("measure_seeds")) for r in c.rows if r.get("role") != "fit"}
    if len(seeds) == 1 and None not in next(iter(seeds)):
        s, m = next(iter(seeds))
        lines.append(f"- **seeds**: the oracle samples {s}, the trained network {m} (the first {s} the same); "
                     f"a rate near 0.5 has a standard error of {0.5 / math.sqrt(s):.2f} predicted, "
                     f"{0.5 / math.sqrt(m):.2f} measured")
    lines += free_lines(c) + axis_lines(c) + per_seed_lines(c)
    ratio = c.cost_ratio
    lines.append(f"- **cost**: prediction {c.prediction_seconds:.0f} s against training {c.train_seconds:.0f} s, "
                 f"ratio {ratio:.3f} (bar: ≤ 0.1): {'meets' if ratio <= 0.1 else 'misses'}")
    if c.headline == "held-out" and c.seconds("held_out", "train_seconds") > 0:
        held, charged = c.held_out_cost
        lines.append(f"- **cost, held-out rows only**: prediction over training {held:.3f}; with the fit set's "
                     f"training ({c.seconds('fit', 'train_seconds'):.0f} s, without which no rule predicts) charged "
                     f"to the prediction: {charged:.3f}")
    return lines


def _ci(rho: float, low: float, high: float) -> str:
    if math.isnan(rho):
        return "undefined"
    return f"{rho:.2f}" + ("" if math.isnan(low) else f" [{low:.2f}, {high:.2f}]")


AIM_MARGIN = 0.05  # the aim: the oracle's rho above the best free ranking's by at least this
AIM_MAE = 0.15


def free_lines(c: Comparison) -> list[str]:
    """The oracle against what is free (:mod:`ablate.design.baselines`), per gated metric, then the levels."""
    b = c.baselines
    if b is None:
        return []
    lines = []
    for m in GATED:
        if m not in b.best or m not in c.correlations:
            continue
        oracle, (name, best) = c.correlations[m], b.best[m]
        partial = b.partial[m]
        gap = oracle.rho - best.rho
        verdict_ = ("the oracle adds nothing over the free ranking here" if math.isnan(gap) or gap <= 0 else
                    f"the oracle is ahead by {gap:.2f}" + (" (aim: ≥ 0.05, met)" if gap >= AIM_MARGIN
                                                           else " (aim: ≥ 0.05, missed)"))
        if not math.isnan(gap) and gap < AIM_MARGIN:
            verdict_ += f"; measured gap to the aim {AIM_MARGIN - gap:.2f}"
        lines.append(f"- **{m} against the free descriptors**: oracle ρ {_ci(oracle.rho, oracle.low, oracle.high)}; "
                     f"best free ranking ({name}) {_ci(best.rho, best.low, best.high)}; "
                     + ", ".join(f"{d} {_ci(k.rho, k.low, k.high)}" for d, k in b.free[m].items() if d != "n")
                     + f"; descriptor regression (fit set only) {_ci(b.regression[m].rho, b.regression[m].low, b.regression[m].high)}"
                     + f"; the oracle's partial ρ given the receptive field {_ci(*partial)}: {verdict_}")
    for m, err in b.levels.items():
        fixed, reg = b.corrected[m], b.regression_levels[m]
        mark = "meets" if err.mae <= AIM_MAE else "misses"
        lines.append(f"- **{m} levels**: oracle MAE {_ci(err.mae, err.low, err.high)} over {err.n} rows (aim ≤ "
                     f"{AIM_MAE}: {mark}; trained minus predicted {err.bias:+.2f} on average); with the fit set's "
                     f"bias removed {_ci(fixed.mae, fixed.low, fixed.high)}; the descriptor regression's "
                     f"{_ci(reg.mae, reg.low, reg.high)}")
    return lines


def axis_lines(c: Comparison) -> list[str]:
    """The data-size axis, per architecture: the oracle's rho along n and the free ranking by n's."""
    lines = []
    for arch, metrics in c.axis.items():
        sizes = sorted({r.get("n") for r in c.rows if r["arch"] == arch})
        parts = [f"{m} oracle ρ {_ci(k['oracle'].rho, k['oracle'].low, k['oracle'].high)} (ranking by n: "
                 f"{_ci(k['n'].rho, k['n'].low, k['n'].high)})" for m, k in metrics.items()]
        lines.append(f"- **data-size axis, {arch}** (n = {', '.join(map(str, sizes))}; aim ρ ≥ 0.8): " + "; ".join(parts))
    return lines


def per_seed_lines(c: Comparison) -> list[str]:
    """Which seeds, and where: pooled kappa and locations against permuted seeds; the mapping's gain."""
    p = c.per_seed
    if not p:
        return []
    f = p["flags"]["pooled"]
    lines = [f"- **which seeds** (pooled over {f['seeds']} seeds of the held-out architectures): Cohen's κ between "
             f"the seeds the oracle spoils and those the trained network spoils {_ci(f['kappa'], f['low'], f['high'])}; "
             f"permuted seeds (within each architecture, so differences in rate between architectures earn "
             f"nothing) give {f['chance']:.2f} on average, {f['chance_high']:.2f} at the 97.5th percentile: "
             + (f"above chance (permutation p = {f['p_value']:.3f})" if f["kappa"] > f["chance_high"]
                else f"not above chance (permutation p = {f['p_value']:.2f})")]
    loc = p.get("locations")
    if loc and loc["seeds"]:
        lines.append(f"- **where** (pooled over the {loc['seeds']} seeds where the network made an artefact): the "
                     f"oracle's touches it on {_ci(loc['hit_rate'], loc['hit_low'], loc['hit_high'])} of them "
                     f"(permuted seeds: {loc['hit_chance']:.2f}); map IoU {_ci(loc['iou'], loc['iou_low'], loc['iou_high'])}"
                     f" over {loc['pairs']} seeds (permuted: {loc['iou_chance']:.2f})")
    gains = p.get("mapping") or {}
    if gains:
        beats = sum(g["own"] > g["others"] for g in gains.values() if g["of"])
        own = sorted(g["own"] for g in gains.values())
        others = sorted(g["others"] for g in gains.values() if g["of"])
        mid = (lambda v: v[len(v) // 2] if v else float("nan"))
        lines.append(f"- **the mapping's gain, per seed**: an architecture's own predicted samples match its trained "
                     f"ones with median r² {mid(own):.2f} (median over architectures); the machines mapped for the "
                     f"grid's other architectures (same data) {mid(others):.2f}; its own machine is better than the "
                     f"others' median for {beats} of {len([g for g in gains.values() if g['of']])} architectures")
    return lines


def tables(c: Comparison) -> list[tuple[str, list[str], list[list[str]]]]:
    """The report's tables beside the architectures': every ranking of each metric on the held-out rows (the
    oracle, each free descriptor, the descriptor regression), and per seed, per held-out architecture."""
    out = []
    b = c.baselines
    if b is not None:
        header = ["ranking"] + [f"{m} ρ [95%]" for m in b.free]
        names = ["oracle"] + list(next(iter(b.free.values()))) + ["descriptor regression (fit set only)"]
        rows = []
        for name in names:
            cells = []
            for m in b.free:
                k = c.correlations.get(m) if name == "oracle" else b.regression[m] if name.startswith("descriptor") \
                    else b.free[m][name]
                cells.append("–" if k is None else _ci(k.rho, k.low, k.high))
            rows.append([name if name != "n" else "n (training-set size)", *cells])
        rows.append(["oracle, partial given the receptive field", *[_ci(*b.partial[m]) for m in b.free]])
        out.append((f"{c.study}: held-out rankings against the free baselines", header, rows))
    p = c.per_seed
    if p:
        flags, gains = p["flags"]["by_arch"], p.get("mapping") or {}
        header = ["architecture", "flagged pred.", "flagged trained", "κ [95%]", "κ permuted seeds (97.5%)", "p",
                  "r² own machine", "r² other machines (median)", "beats"]
        rows = []
        for label_, f in flags.items():
            g = gains.get(label_, {})
            rows.append([label_, f"{f['predicted_rate']:.2f}", f"{f['trained_rate']:.2f}", _ci(f["kappa"], f["low"], f["high"]),
                         "–" if f["chance_high"] is None or math.isnan(f["chance_high"]) else f"{f['chance_high']:.2f}",
                         "–" if f.get("p_value") is None or math.isnan(f["p_value"]) else f"{f['p_value']:.3f}",
                         f"{g['own']:.2f}" if g else "–",
                         f"{g['others']:.2f}" if g and not math.isnan(g["others"]) else "–",
                         f"{g['beats']} of {g['of']}" if g else "–"])
        out.append((f"{c.study}: per seed, held-out architectures", header, rows))
    return out


def _ordered(c: Comparison) -> list[tuple[str, list[dict[str, Any]]]]:
    """The rows by role: held-out first, then the fit set (one group without a split)."""
    groups = [(role, [r for r in c.rows if r.get("role", "held_out") == role]) for role in ("held_out", "fit")]
    groups = [(role, rows) for role, rows in groups if rows]
    return groups if len(groups) > 1 else [("all", c.rows)]


def markdown(comparisons: list[Comparison], images: dict[str, dict[str, Path]], out: Path) -> str:
    parts = ["# Design before training: predicted vs measured", "",
             "Every architecture is first mapped to an ELS machine by the stated rule (`ablate/design/mapping.py`) "
             "and sampled without training; then it is trained, sampled from the same seeds and scored with the "
             "same metrics. Spearman's ρ ranks the grid by each.", ""]
    for c in comparisons:
        parts += [f"## {c.study}", "", *verdict(c), ""]
        for role, rows in _ordered(c):
            if role != "all":
                parts += [f"### {ROLE_NAMES[role]} architectures", ""]
            parts.append("| " + " | ".join(h for _, h, _ in COLUMNS) + " |")
            parts.append("|" + "---|" * len(COLUMNS))
            for r in rows:
                parts.append("| " + " | ".join(_cell(r, k, f) for k, _, f in COLUMNS) + " |")
            parts.append("")
        for title, header, rows in tables(c):
            parts += [f"### {title}", "", "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
            parts += ["| " + " | ".join(row) + " |" for row in rows]
            parts.append("")
        for name, path in images.get(c.study, {}).items():
            parts.append(f"![{name}]({path.relative_to(out).as_posix()})")
        parts.append("")
    return "\n".join(parts)


def _img(path: Path) -> str:
    return f"<img alt='{html.escape(path.stem)}' src='data:image/png;base64,{base64.b64encode(path.read_bytes()).decode()}'>"


def html_page(comparisons: list[Comparison], images: dict[str, dict[str, Path]]) -> str:
    parts = ["<h1>Design before training: predicted vs measured</h1>"]
    for c in comparisons:
        parts.append(f"<h2>{html.escape(c.study)}</h2><ul>")
        parts += [f"<li>{html.escape(line[2:]).replace('**', '')}</li>" for line in verdict(c)]
        parts.append("</ul>")
        for role, rows in _ordered(c):
            if role != "all":
                parts.append(f"<h3>{ROLE_NAMES[role]} architectures</h3>")
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(h)}</th>" for _, h, _ in COLUMNS) + "</tr>")
            for r in rows:
                parts.append("<tr>" + "".join(f"<td>{html.escape(_cell(r, k, f))}</td>" for k, _, f in COLUMNS)
                             + "</tr>")
            parts.append("</table>")
        for title, header, rows in tables(c):
            parts.append(f"<h3>{html.escape(title)}</h3><table><tr>"
                         + "".join(f"<th>{html.escape(h)}</th>" for h in header) + "</tr>")
            parts += ["<tr>" + "".join(f"<td>{html.escape(v)}</td>" for v in row) + "</tr>" for row in rows]
            parts.append("</table>")
        parts += [_img(p) for p in images.get(c.study, {}).values()]
    style = ("body{font-family:sans-serif;margin:2em;max-width:1500px} img{max-width:100%;display:block;margin:1em 0}"
             " table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ccc;padding:3px 6px}")
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>design before training</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")


def write_report(comparisons: list[Comparison], samples_root: Path, out: Path) -> dict[str, Path]:
    """``report.md``, ``report.html``, ``report.json`` (:func:`~ablate.design.export.report_data`) and the PNGs
    into ``out``; returns their paths. ``samples_root``: what the rows' ``samples_path`` are relative to."""
    out.mkdir(parents=True, exist_ok=True)
    images: dict[str, dict[str, Path]] = {}
    for c in comparisons:
        images[c.study] = {"predicted vs measured": scatter_plot(c, out / f"{c.study}-scatter.png")}
        axis = axis_plot(c, out / f"{c.study}-data-size.png")
        if axis is not None:
            images[c.study]["the data-size axis"] = axis
        steps = per_step_plot(c, out / f"{c.study}-per-step.png")
        if steps is not None:
            images[c.study]["calibrated ELS per step"] = steps
        grid = samples_plot(c, samples_root, out / f"{c.study}-samples.png")
        if grid is not None:
            images[c.study]["samples before and after training"] = grid
    md = out / "report.md"
    md.write_text(markdown(comparisons, images, out))
    page = out / "report.html"
    page.write_text(html_page(comparisons, images))
    data = out / "report.json"
    data.write_text(json.dumps(report_data(comparisons), indent=1, allow_nan=False) + "\n")
    return {"markdown": md, "html": page, "json": data, **{f"{s}/{k}": p for s, d in images.items() for k, p in d.items()}}

"""A static, offline HTML report of a study: Pareto front, parallel coordinates, each objective against each
knob, the sample grids of the Pareto trials, and a table of every trial. Pictures are matplotlib PNGs
embedded as base64, so the page needs no network and no scripts."""
from __future__ import annotations

import base64
import html
import json
import io
from pathlib import Path

from optuna.trial import TrialState

from ablate.sweep.definition import SweepDefinition
from ablate.sweep.storage import counts, load_existing, out_dir, pareto
from ablate.viz import pyplot


def _png(fig) -> str:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    pyplot().close(fig)
    return "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()


def _numeric(values: list) -> tuple[list[float], list[str] | None]:
    """Numbers as they are; categories as their index (with the labels)."""
    if all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values):
        return [float(v) for v in values], None
    labels = sorted({str(v) for v in values})
    return [float(labels.index(str(v))) for v in values], labels


def pareto_plot(names: list[str], trials, front_ids: set[int]) -> str:
    plt = pyplot()
    pairs = [(i, j) for i in range(len(names)) for j in range(i + 1, len(names))] or [(0, 0)]
    fig, axes = plt.subplots(1, len(pairs), figsize=(4.2 * len(pairs), 3.8), squeeze=False)
    for ax, (i, j) in zip(axes[0], pairs):
        for front in (False, True):
            pts = [t for t in trials if (t.number in front_ids) == front]
            ax.scatter([t.values[i] for t in pts], [t.values[j] if j != i else 0 for t in pts],
                       c="tab:red" if front else "tab:grey", s=30 if front else 14,
                       label="Pareto front" if front else "other trials", zorder=3 if front else 2)
        ax.set(xlabel=names[i], ylabel=names[j] if j != i else "")
        ax.legend(fontsize=7)
    fig.suptitle("objectives of every completed trial", fontsize=10)
    fig.tight_layout()
    return _png(fig)


def parallel_plot(names: list[str], params: list[str], trials, front_ids: set[int]) -> str:
    plt = pyplot()
    axes_names = params + names
    columns = []
    for k, name in enumerate(axes_names):
        raw = [t.params[name] for t in trials] if k < len(params) else [t.values[k - len(params)] for t in trials]
        nums, labels = _numeric(raw)
        lo, hi = min(nums), max(nums)
        columns.append(([(v - lo) / (hi - lo) if hi > lo else 0.5 for v in nums], labels, lo, hi))
    fig, ax = plt.subplots(figsize=(1.6 * len(axes_names) + 2, 3.8))
    for r, t in enumerate(trials):
        front = t.number in front_ids
        ax.plot(range(len(axes_names)), [c[0][r] for c in columns], color="tab:red" if front else "tab:grey",
                alpha=0.9 if front else 0.35, lw=1.6 if front else 0.8, zorder=3 if front else 2)
    ax.set_xticks(range(len(axes_names)))
    ax.set_xticklabels([f"{n}\n[{c[2]:.3g}, {c[3]:.3g}]" if c[1] is None else f"{n}\n{'/'.join(c[1])}"
                        for n, c in zip(axes_names, columns)], fontsize=7)
    ax.set_yticks([])
    ax.set_title("parallel coordinates (each axis scaled to its range; red: Pareto front)", fontsize=9)
    fig.tight_layout()
    return _png(fig)


def knob_plots(names: list[str], params: list[str], trials) -> str:
    plt = pyplot()
    fig, axes = plt.subplots(len(names), max(1, len(params)), figsize=(3.2 * max(1, len(params)), 2.6 * len(names)),
                             squeeze=False)
    for i, name in enumerate(names):
        for j, param in enumerate(params):
            ax = axes[i][j]
            x, labels = _numeric([t.params[param] for t in trials])
            ax.scatter(x, [t.values[i] for t in trials], s=14)
            if labels:
                ax.set_xticks(range(len(labels)))
                ax.set_xticklabels(labels, fontsize=7)
            ax.set(xlabel=param, ylabel=name)
    fig.tight_layout()
    return _png(fig)


def fmt(value) -> str:
    """A knob or figure for people: 4 significant digits for floats."""
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def knob_text(knobs: dict) -> str:
    return ", ".join(f"{k}={fmt(v)}" for k, v in knobs.items())


TOKEN_MACHINES = ("els_zeros", "els_circular", "ls_zeros", "ls_circular", "ideal", "bigram", "unigram")


def token_tables(definition: SweepDefinition, trials) -> list[list[str]] | None:
    """For a sweep of token models (theory section 12): two Markdown tables, the text metrics of each network's
    texts on its league's seeds and each machine's per-seed token agreement with the network (95% interval)
    against chance, from each trial's ``agreement.json``; None when no trial is a token model."""
    rows = []
    for t in sorted(trials, key=lambda t: t.number):
        html_path = t.user_attrs.get("samples_html")
        if not html_path or not (Path(html_path).parent / "agreement.json").is_file():
            continue
        rows.append((t, json.loads((Path(html_path).parent / "agreement.json").read_text())))
    if not rows:
        return None
    from ablate.data import load_dataset
    from ablate.metrics.text import text_scores

    data = load_dataset(definition.data)
    name = lambda t: str(t.params.get("arch", f"trial {t.number}"))  # noqa: E731
    first = ["| architecture | receptive field | validity | creativity | memorisation | text artefact | val loss |",
             "|---|---|---|---|---|---|---|"]
    for t, s in rows:
        a = {**text_scores(data, data.encode(s["texts"]["network"])), "val_loss": t.user_attrs.get("val_loss")}
        first.append(f"| {name(t)} | {s['receptive_field'] or 'global'} | {a['validity']:.3f} | {a['creativity']:.3f} | "
                     f"{a['memorisation']:.3f} | {a['artefact_rate']:.3f} | {a.get('val_loss') or float('nan'):.3f} |")
    second = ["| architecture | " + " | ".join(TOKEN_MACHINES) + " | chance | closest |",
              "|---|" + "---|" * (len(TOKEN_MACHINES) + 2)]
    for t, s in rows:
        m = s["machines"]
        cells = [f"{m[k]['agreement']:.3f} [{m[k]['agreement_ci95'][0]:.3f}, {m[k]['agreement_ci95'][1]:.3f}]"
                 if k in m else "" for k in TOKEN_MACHINES]
        second.append(f"| {name(t)} | " + " | ".join(cells) + f" | {s['chance_agreement']:.3f} | {s['ranking'][0]} |")
    return [first, second]


def write_report(definition: SweepDefinition, url: str, path: str | Path | None = None) -> Path:
    definition, study = load_existing(definition, url)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    if not done:
        raise ValueError(f"study {definition.name!r} has no completed trial yet; run it first")
    names = list(definition.objectives)
    params = sorted({k for t in done for k in t.params})
    front = pareto(study)
    front_ids = {t.number for t in front}
    c = counts(study)
    parts = [f"<h1>Sweep {html.escape(definition.name)}</h1>",
             f"<p>{html.escape(definition.description)}</p>",
             f"<p class=counts>{c['complete']} complete, {c['pruned']} pruned, {c['fail']} failed, "
             f"{c['running']} running, {c['waiting']} queued &middot; objectives: "
             + ", ".join(f"{html.escape(n)} ({d})" for n, d in definition.objectives.items()) + "</p>",
             f"<p class=fixed>fixed knobs: {html.escape(knob_text(definition.fixed) or 'none')} &middot; data: "
             f"{html.escape(knob_text({k: v for k, v in vars(definition.data).items() if v is not None}))} "
             f"&middot; {definition.seeds} seeds, {definition.steps} steps</p>",
             f"<img alt='Pareto front' src='{pareto_plot(names, done, front_ids)}'>"]
    if params:
        parts += [f"<img alt='parallel coordinates' src='{parallel_plot(names, params, done, front_ids)}'>",
                  "<h2>Each objective against each knob</h2>",
                  f"<img alt='objectives against knobs' src='{knob_plots(names, params, done)}'>"]
    tables = token_tables(definition, done)
    if tables is not None:  # token models: the text metrics and the machines' agreement, also as report.md
        md = [f"# {definition.name}", "", definition.description, "",
              f"{definition.steps} unmasking steps; the text metrics of each network's texts and each machine's per-seed "
              "token agreement with the network (mean, bootstrap 95% interval over seeds), on the league's own seeds "
              "(evaluate.py's text path).", "",
              *tables[0], "", *tables[1], ""]
        (Path(path).parent if path else out_dir(definition)).mkdir(parents=True, exist_ok=True)
        ((Path(path).parent if path else out_dir(definition)) / "report.md").write_text("\n".join(md))
        for table in tables:
            head, *body = [line.strip("|").split(" | ") for line in table if not line.startswith("|---")]
            parts.append("<table><tr>" + "".join(f"<th>{html.escape(c.strip())}</th>" for c in head) + "</tr>" + "".join(
                "<tr>" + "".join(f"<td>{html.escape(c.strip())}</td>" for c in row) + "</tr>" for row in body)
                + "</table>")
    parts.append(f"<h2>Pareto front: {len(front)} trial(s)</h2>")
    for t in front:
        grid = t.user_attrs.get("grid")
        label = ", ".join(f"{n}={v:.4g}" for n, v in zip(names, t.values))
        parts.append(f"<h3>trial {t.number}: {html.escape(label)}</h3><p>{html.escape(knob_text(t.params))}</p>")
        if grid and Path(grid).is_file():
            data = base64.b64encode(Path(grid).read_bytes()).decode()
            parts.append(f"<img class=grid alt='samples of trial {t.number}' src='data:image/png;base64,{data}'>")
    rows = []
    for t in study.get_trials(deepcopy=False):
        vals = "".join(f"<td>{v:.4g}</td>" for v in t.values) if t.values else "<td></td>" * len(names)
        err = html.escape(str(t.user_attrs.get("error", "")))
        took = f"{(t.datetime_complete - t.datetime_start).total_seconds():.1f}" \
            if t.datetime_complete and t.datetime_start else ""
        rows.append(f"<tr class='trial {t.state.name.lower()}'><td>{t.number}</td><td>{t.state.name}</td>{vals}"
                    f"<td>{took}</td><td>{html.escape(knob_text(t.params))}</td><td>{err}</td></tr>")
    head = "".join(f"<th>{html.escape(n)} ({'max' if d == 'maximize' else 'min'})</th>"
                   for n, d in definition.objectives.items())
    parts.append(f"<h2>All trials</h2><table><tr><th>#</th><th>state</th>{head}<th>seconds</th><th>knobs</th>"
                 "<th>error</th></tr>"
                 + "".join(rows) + "</table>")
    style = ("body{font-family:sans-serif;margin:2em;max-width:1400px} img{max-width:100%;display:block;"
             "margin:1em 0} table{border-collapse:collapse;font-size:12px} td,th{border:1px solid #ccc;"
             "padding:3px 6px} tr.fail{background:#fdd}")
    page = (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(definition.name)}</title>"
            f"<style>{style}</style></head><body>{''.join(parts)}</body></html>")
    out = Path(path) if path else out_dir(definition) / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(page)
    return out


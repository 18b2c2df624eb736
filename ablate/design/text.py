"""Text design before training (issue #29, theory section 12): what the discrete machine each token architecture
is predicted to be (:func:`~ablate.design.mapping.predict_token_oracle`, no training and no fitting) writes,
against what the trained network writes from the same seeds with the same randomness.

* **In the design kind** (a design sweep on token data, :mod:`ablate.design.text_study`): each trial predicts its
  architecture's texts (:func:`predict_tokens`), trains it, and compares them seed by seed beside the free bigram
  model (:func:`run_text_design_trial`).
* **On a trained ``train`` sweep** of token models (:func:`predict_text`): the predicted machine unmasks the seeds
  of each trial's league (``agreement.json``); the report gives, per architecture, the text metrics predicted and
  trained and the per-seed agreement of the two texts (with a bootstrap interval) beside the bigram model's, and
  over architectures Spearman's rho of predicted against trained metrics.

    python -m ablate.design predict-text sweeps/text_words.yaml     # writes <sweep>/prediction.md
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

import torch
from optuna.trial import TrialState

from ablate.data import load_dataset
from ablate.data.tokens import encode
from ablate.design.mapping import predict_token_oracle
from ablate.design.statistics import spearman
from ablate.evaluation.text import FrequencyDenoiser, bootstrap_mean, chance_agreement, samples_html
from ablate.metrics.text import TEXT_METRICS, text_scores
from ablate.oracle import build_oracle
from ablate.sampling import unmask
from ablate.sweep.context import merged_knobs
from ablate.sweep.definition import load_definition
from ablate.sweep.storage import default_storage, load_existing, out_dir
from ablate.sweep.train_kind import train_config


def predict_text(path: str | Path, dataset: str | None = None) -> Path:
    definition = load_definition(path, dataset)
    definition, study = load_existing(definition, default_storage(definition))
    data = load_dataset(definition.data)
    L, V = data.shape[0], data.vocab_size
    rows: list[dict[str, Any]] = []
    for t in sorted(study.get_trials(deepcopy=False), key=lambda t: t.number):
        html_path = t.user_attrs.get("samples_html")
        if t.state != TrialState.COMPLETE or not html_path:
            continue
        league = json.loads((Path(html_path).parent / "agreement.json").read_text())
        model = train_config(definition, merged_knobs(definition, t.params)).model
        start = time.perf_counter()
        geometry, config = predict_token_oracle(model, L, V)
        predicted = unmask(build_oracle(config, data.train), league["seeds"], L, league["steps"]).tokens
        seconds = time.perf_counter() - start
        # the network's league kept its texts (symbols up to the first end symbol)
        trained = encode(league["texts"]["network"], data.vocab, L)
        same = text_agreement(data, predicted, trained)
        rows.append({"arch": t.params.get("arch", f"trial {t.number}"), "k": config.patch_size,
                     "boundary": config.boundary, "receptive_field": geometry.receptive_field,
                     "predicted": text_scores(data, predicted), "trained": text_scores(data, trained),
                     "agreement": bootstrap_mean(same), "bigram": league["machines"]["bigram"]["agreement"],
                     "seconds": seconds, "train_seconds": t.user_attrs.get("train_seconds")})
    if not rows:
        raise ValueError(f"{definition.name} has no completed trial of a token model with its league")
    out = out_dir(definition) / "prediction.md"
    out.write_text("\n".join(lines(definition.name, rows)) + "\n")
    return out


def lines(name: str, rows: list[dict[str, Any]]) -> list[str]:
    out = [f"# {name}: predicted before training", "",
           "Each architecture's predicted machine (discrete ELS at its boundary, window = its receptive field; no "
           "training, no fitting) unmasks its league's seeds with the same randomness as the trained network.", "",
           "| architecture | predicted machine | validity pred. / trained | creativity | memorisation | text artefact "
           "| text agreement, same seed (95% CI) | bigram's | predict s / train s |",
           "|---|---|---|---|---|---|---|---|---|"]
    for r in rows:
        p, t = r["predicted"], r["trained"]
        a = r["agreement"]
        out.append(f"| {r['arch']} | ELS {r['boundary']} k = {r['k']} | {p['validity']:.3f} / {t['validity']:.3f} | "
                   f"{p['creativity']:.3f} / {t['creativity']:.3f} | {p['memorisation']:.3f} / {t['memorisation']:.3f} "
                   f"| {p['artefact_rate']:.3f} / {t['artefact_rate']:.3f} | {a[0]:.3f} [{a[1]:.3f}, {a[2]:.3f}] | "
                   f"{r['bigram']:.3f} | {r['seconds']:.0f} / {r['train_seconds'] or float('nan'):.0f} |")
    out += ["", f"Spearman's rho over the {len(rows)} architectures, predicted against trained:", ""]
    for m in TEXT_METRICS:
        rho, p_value = spearman([r["predicted"][m] for r in rows], [r["trained"][m] for r in rows])
        out.append(f"- {m}: rho {rho:.2f} (p {p_value:.2g})")
    return out


# ---- the design kind on token data (a design trial of a token model) ----

# the predicted text metrics a token design trial reports (``predicted_<metric>``), beside the trained ones
PREDICTED_TEXT = TEXT_METRICS + ("balance_rate",)


def text_agreement(data, a: torch.Tensor, b: torch.Tensor) -> list[float]:
    """Per seed, the fraction of the ``L`` positions where two sets of samples ``[S, L]`` write the same symbol,
    both read as texts (the symbols before the first end symbol, end symbols after it: what a sample is)."""
    a, b = encode(data.decode(a), data.vocab, data.shape[0]), encode(data.decode(b), data.vocab, data.shape[0])
    return (a == b).double().mean(1).tolist()


def predict_tokens(ctx, model, seeds: list[int]) -> tuple[dict[str, Any], torch.Tensor]:
    """The theory machine of a token architecture (:func:`~ablate.design.mapping.predict_token_oracle`: no
    training, nothing fitted) unmasking ``seeds``: its figures (``predicted_*`` text metrics, the machine,
    ``prediction_seconds``) and its samples ``[S, L]``."""
    start = time.perf_counter()
    L, V = ctx.data.shape[0], ctx.data.vocab_size
    geometry, config = predict_token_oracle(model, L, V)
    predicted = unmask(build_oracle(config, ctx.data.train), seeds, L, ctx.definition.steps).tokens
    scores = ctx.suite.score(predicted)
    rf = geometry.receptive_field
    return {**{f"predicted_{m}": scores[m] for m in PREDICTED_TEXT if m in scores},
            "predicted_machine": f"els {config.boundary} k={config.patch_size}", "predicted_k": config.patch_size,
            "boundary": config.boundary, "receptive_field": rf, "global": rf is None,
            "local_receptive_field": 2 * L - 1 if rf is None else rf, "stride": 1,
            "prediction_seconds": time.perf_counter() - start, "prediction_seeds": len(seeds)}, predicted


def run_text_design_trial(ctx, model, tag: str, measure, measure_seeds: int) -> dict[str, Any]:
    """A design trial of a token architecture ``model`` (a :class:`~ablate.models.BackboneConfig`): predicted
    (:func:`predict_tokens`, on the study's seeds), then trained and measured by ``measure(seeds)`` (the design
    kind's :func:`~ablate.sweep.train_kind.train_and_measure`: text metrics on ``measure_seeds`` seeds, the text
    league), then compared seed by seed: ``prediction_agreement`` (the fraction of symbols the predicted machine
    writes as the trained network does, from the same seed and randomness, with a bootstrap interval) beside the
    free bigram model's (``bigram_prediction_agreement``), and chance. Saves both sets of texts and a
    side-by-side page (``samples/<tag>.html``)."""
    seeds = list(range(ctx.definition.seeds))
    predicted_figures, predicted = predict_tokens(ctx, model, seeds)
    measured = measure(measure_seeds)
    trained = measured.pop("samples")[:len(seeds)]  # the prediction's seeds; the rest only sharpened the rates
    L, V = ctx.data.shape[0], ctx.data.vocab_size
    bigram = unmask(FrequencyDenoiser(ctx.data.train, V, "bigram"), seeds, L, ctx.definition.steps).tokens
    same, free = text_agreement(ctx.data, predicted, trained), text_agreement(ctx.data, bigram, trained)
    agreement, free_agreement = bootstrap_mean(same), bootstrap_mean(free)
    gain = bootstrap_mean([a - b for a, b in zip(same, free)])
    out = Path(ctx.out_dir) / "samples"
    out.mkdir(parents=True, exist_ok=True)
    texts = {"network": ctx.data.decode(trained), "predicted": ctx.data.decode(predicted),
             "bigram": ctx.data.decode(bigram)}
    (out / f"{tag}.json").write_text(json.dumps({"seeds": seeds, "texts": texts}, indent=0))
    page = samples_html({"dataset": f"{ctx.data.name}: {tag}, predicted before training", "seeds": seeds,
                         "texts": texts, "ranking": ["predicted", "bigram"],
                         "chance_agreement": chance_agreement(ctx.data.train, V),
                         "machines": {"predicted": {"agreement": agreement[0]},
                                      "bigram": {"agreement": free_agreement[0]}}}, out / f"{tag}.html")
    return {**measured, **predicted_figures, "measure_seeds": measure_seeds,
            "prediction_agreement": agreement[0], "prediction_agreement_low": agreement[1],
            "prediction_agreement_high": agreement[2], "bigram_prediction_agreement": free_agreement[0],
            "bigram_prediction_agreement_low": free_agreement[1], "bigram_prediction_agreement_high": free_agreement[2],
            "prediction_gain": gain[0], "prediction_gain_low": gain[1], "prediction_gain_high": gain[2],
            "samples_page": str(page)}

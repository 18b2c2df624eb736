"""Text design before training (issue #29), on a trained text sweep: what the discrete machine each architecture
is predicted to be (:func:`~ablate.design.mapping.predict_token_oracle`, no training and no fitting) writes,
against what the trained network wrote from the same seeds.

For every completed trial of a ``train`` sweep of token models, the predicted machine unmasks the seeds of the
trial's league (``agreement.json``) with the same randomness; the report gives, per architecture, the text
metrics predicted and trained and the per-seed agreement of the two texts (with a bootstrap interval) beside the
bigram model's, and over architectures Spearman's rho of predicted against trained metrics.

    python -m ablate.design predict-text sweeps/text_words.yaml     # writes <sweep>/prediction.md
"""
from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from optuna.trial import TrialState

from ablate.data import load_dataset
from ablate.data.tokens import encode
from ablate.design.mapping import predict_token_oracle
from ablate.design.statistics import spearman
from ablate.evaluation.text import bootstrap_mean
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
        # both as texts (symbols up to the first end symbol), encoded back: the network's league kept its texts
        trained = encode(league["texts"]["network"], data.vocab, L)
        predicted = encode(data.decode(predicted), data.vocab, L)
        same = (trained == predicted).double().mean(1).tolist()
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

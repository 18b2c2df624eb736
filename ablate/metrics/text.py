"""Text analogues of the image metrics (theory section 12), as torchmetrics.

For a token dataset (:class:`~ablate.data.TokenDataset`) and samples int64 ``[B, L]``:

* **validity** (coherence): the fraction of samples that are valid: a word of the whole dictionary (train and
  held out) for ``words``, a line of the file for ``text``, a balanced sequence for ``brackets``;
* **creativity**: the fraction that are valid and not in the training split;
* **memorisation**: the fraction whose text equals a training sequence's;
* **artefact rate** (the text's extra finger): the fraction that are *not* valid although every window of
  ``k`` consecutive tokens of the text followed by end symbols occurs somewhere in the training sequences:
  locally right, globally wrong;
* for ``brackets``: the **balance rate** (= validity) and, over the unbalanced samples, where the rule breaks
  (``break_position``: the mean index of the first violation, :func:`~ablate.data.bracket_break`, over the
  sample's length).

A sample is its text, the symbols before its first end symbol; anything a sampler wrote after it is not part
of the sample (it is what :func:`~ablate.data.tokens.decode` drops).
"""
from __future__ import annotations

import torch
from torchmetrics import Metric

from ablate.data.tokens import TokenDataset, bracket_break, decode, encode

TEXT_METRICS = ("validity", "creativity", "memorisation", "artefact_rate")


def windows_of(tokens: torch.Tensor, k: int) -> set[tuple[int, ...]]:
    """Every window of ``k`` consecutive tokens of every row of ``tokens`` ``[N, L]``."""
    if k > tokens.shape[1]:
        return {tuple(row) for row in tokens.tolist()}
    return {tuple(w) for w in tokens.unfold(1, k, 1).reshape(-1, k).tolist()}


class TextMetrics(Metric):
    """validity, creativity, memorisation and artefact rate (and for brackets the balance rate and break
    position) of token samples ``[B, L]``, accumulated over ``update`` calls."""

    full_state_update = False

    def __init__(self, data: TokenDataset, k: int = 3) -> None:
        super().__init__()
        if k < 1:
            raise ValueError(f"k={k} must be >= 1 (the window of the artefact's local check)")
        self.data, self.k = data, k
        self.kinds = "".join(c for c in data.vocab if c in "()[]") if data.name == "brackets" else None
        self.train_texts = set(decode(data.train, data.vocab))
        self.known = self.train_texts | set(decode(data.heldout, data.vocab))
        self.local = windows_of(data.train, k)
        self.train_rows = {tuple(r) for r in data.train.tolist()}
        for name in ("total", "valid_count", "novel", "memorised", "artefacts", "broken", "break_sum"):
            self.add_state(name, default=torch.tensor(0.0, dtype=torch.float64), dist_reduce_fx="sum")

    def is_valid(self, text: str) -> bool:
        if self.kinds is not None:
            return bracket_break(text, self.kinds) is None
        return text in self.known

    def update(self, tokens: torch.Tensor) -> None:
        if tokens.dim() != 2 or tokens.shape[1] != self.data.shape[0]:
            raise ValueError(f"samples must be [B, L] with L={self.data.shape[0]}; got {tuple(tokens.shape)}")
        L = tokens.shape[1]
        if len(tokens) and int(tokens.max()) >= self.data.vocab_size:
            raise ValueError("samples hold the mask token; score finished samples (every position unmasked)")
        texts = decode(tokens, self.data.vocab)
        # a sample is its text, the symbols before its first end symbol: what follows is not part of it
        canonical = encode(texts, self.data.vocab, L)
        for row, text in zip(canonical.tolist(), texts):
            ok = self.is_valid(text)
            self.total += 1
            self.valid_count += ok
            self.novel += ok and text not in self.train_texts
            self.memorised += tuple(row) in self.train_rows
            if not ok:
                k = min(self.k, L)
                local = all(tuple(row[i:i + k]) in self.local for i in range(L - k + 1))
                self.artefacts += local
                if self.kinds is not None:
                    where = bracket_break(text, self.kinds)
                    self.broken += 1
                    self.break_sum += where / max(1, len(text))

    def compute(self) -> dict[str, float]:
        n = max(float(self.total), 1.0)
        out = {"validity": float(self.valid_count) / n, "creativity": float(self.novel) / n,
               "memorisation": float(self.memorised) / n, "artefact_rate": float(self.artefacts) / n,
               "samples": int(self.total)}
        if self.kinds is not None:
            out["balance_rate"] = out["validity"]
            out["break_position"] = float(self.break_sum) / float(self.broken) if float(self.broken) else float("nan")
        return out


def text_scores(data: TokenDataset, tokens: torch.Tensor, k: int = 3) -> dict[str, float]:
    """:class:`TextMetrics` of one set of samples."""
    metric = TextMetrics(data, k)
    metric.update(tokens)
    return metric.compute()


class TextSuite:
    """The token datasets' metric suite (:func:`~ablate.metrics.build_suite` gives it): ``score(tokens)`` is
    :func:`text_scores` with the artefact's window ``k``."""

    def __init__(self, data: TokenDataset, k: int = 3) -> None:
        self.data, self.k = data, k

    def score(self, tokens: torch.Tensor, labels: torch.Tensor | None = None) -> dict[str, float]:
        return text_scores(self.data, tokens, self.k)

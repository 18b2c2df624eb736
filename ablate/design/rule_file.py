"""A mapping rule on disk: its constants, the fit set they were fitted on, and the commit that fitted them.

The design study's protocol (issue #19) fits the rule on a declared fit set only and predicts a held-out
grid with it; the file is what travels between the two and what the report quotes::

    rule: {rf_fraction: 0.64, shape: 1.5, k_low: 3, attention_rule: fitted,
           attention_rf_fraction: 1.28, attention_shape: 0.7}
    fit_set:                       # each member's calibration (high noise first) and how well the rule fits it
      - {name: resnet_d6, receptive_field: 17, attention: false, allowed: 63, rms_error: 0.63,
         ks: [11, 11, ...], alpha_bars: [0.0016, ...], source: runs/sweeps/...}
    commit: 0131d04...             # the code that fitted it (null outside a git checkout)
    fitted: '2026-11-26T02:00:00+00:00'

``python -m ablate.design fit-rule`` writes one; ``design-before-training --rule FILE`` predicts with one.
"""
from __future__ import annotations

import subprocess
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Sequence

import yaml

from ablate.design.mapping import FitMember, MappingRule, fit_rule, member_error

KEYS = ("rule", "fit_set", "commit", "fitted")
MEMBER_KEYS = ("name", "receptive_field", "attention", "allowed", "ks", "alpha_bars", "rms_error", "source")


@dataclass(frozen=True)
class RuleFile:
    rule: MappingRule
    fit_set: tuple[FitMember, ...]
    commit: str | None
    fitted: str
    sources: dict[str, str] = field(default_factory=dict)  # member name -> where its calibration came from
    path: Path | None = field(default=None, compare=False)

    def to_dict(self) -> dict[str, Any]:
        members = [{"name": m.name, "receptive_field": m.receptive_field, "attention": m.attention,
                    "allowed": m.allowed, "rms_error": round(member_error(m, self.rule), 4), "ks": list(m.ks),
                    "alpha_bars": [float(a) for a in m.alpha_bars], "source": self.sources.get(m.name)}
                   for m in self.fit_set]
        return {"rule": self.rule.knobs(), "fit_set": members, "commit": self.commit, "fitted": self.fitted}

    def save(self, path: str | Path) -> Path:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(yaml.safe_dump(self.to_dict(), sort_keys=False, width=120))
        return path


def current_commit() -> str | None:
    """The checkout's commit (with ``+dirty`` when tracked files differ from it), or None outside git. The runs
    root is not code: a study kept in the checkout (``studies/``) changes as it runs without making it dirty."""
    from ablate.paths import runs_root

    root = Path(__file__).resolve().parents[2]
    outputs = runs_root().resolve()
    exclude = [f":(exclude){outputs.relative_to(root)}"] if outputs.is_relative_to(root) and outputs != root else []
    try:
        sha = subprocess.run(["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, timeout=10)
        if sha.returncode != 0:
            return None
        dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no", "--", ".", *exclude],
                               cwd=root, capture_output=True, text=True, timeout=10).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return None
    return sha.stdout.strip() + ("+dirty" if dirty else "")


def fit_rule_file(members: Sequence[FitMember], sources: dict[str, str] | None = None, k_low: int = 3) -> RuleFile:
    """Fit the rule on ``members`` (:func:`~ablate.design.mapping.fit_rule`) and keep them with it."""
    names = [m.name for m in members]
    if len(set(names)) != len(names):
        raise ValueError(f"fit set members need distinct names; got {names}")
    return RuleFile(fit_rule(members, k_low), tuple(members), current_commit(),
                    datetime.now(timezone.utc).isoformat(timespec="seconds"), dict(sources or {}))


def _content(d: dict[str, Any]) -> dict[str, Any]:
    """A rule file's constants and fit set as written to disk (floats round-tripped), without its provenance."""
    return {k: v for k, v in yaml.safe_load(yaml.safe_dump(d, sort_keys=True)).items() if k in ("rule", "fit_set")}


def save_or_keep(new: RuleFile, path: str | Path) -> tuple[RuleFile, bool]:
    """Write ``new`` to ``path`` unless the file there already holds the same rule fitted on the same fit set,
    in which case that file (and its commit and date: the rule's provenance) is kept. A different rule never
    overwrites the earlier one: the earlier file is moved aside to ``<stem>.replaced-<its date>.yaml``, so that
    the held-out trials predicted with it stay traceable. Returns the rule now on disk and whether it was written."""
    path = Path(path)
    if path.exists():
        try:
            old = load_rule(path)
        except ValueError:
            old = None  # unreadable: moved aside below, never silently lost
        if old is not None and _content(old.to_dict()) == _content(new.to_dict()):
            return old, False
        stamp = (old.fitted if old is not None else datetime.now(timezone.utc).isoformat(timespec="seconds"))
        path.rename(path.with_name(f"{path.stem}.replaced-{stamp.replace(':', '')}.yaml"))
    new.save(path)
    return replace(new, path=path), True


def load_rule(path: str | Path) -> RuleFile:
    """Read and validate a rule file; every error names the file and what was wrong."""
    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ValueError(f"cannot read rule file {str(path)!r}: {err}") from err
    if not isinstance(raw, dict) or "rule" not in raw:
        raise ValueError(f"rule file {str(path)!r} must be a mapping with a 'rule' key (write one with "
                         "`python -m ablate.design fit-rule`)")
    unknown = set(raw) - set(KEYS)
    if unknown:
        raise ValueError(f"rule file {str(path)!r}: unknown keys {sorted(unknown)}; allowed: {', '.join(KEYS)}")
    rule_raw = raw["rule"]
    if not isinstance(rule_raw, dict):
        raise ValueError(f"rule file {str(path)!r}: 'rule' must map the constants to values; got {rule_raw!r}")
    allowed = tuple(MappingRule().knobs()) + ("attention_rf_fraction", "attention_shape", "attention_weight")
    bad = set(rule_raw) - set(allowed)
    if bad:
        raise ValueError(f"rule file {str(path)!r}: unknown rule constants {sorted(bad)}; allowed: {', '.join(allowed)}")
    try:
        rule = MappingRule.from_knobs(rule_raw)
        members, sources = [], {}
        for i, m in enumerate(raw.get("fit_set") or []):
            if not isinstance(m, dict) or set(m) - set(MEMBER_KEYS):
                raise ValueError(f"fit_set[{i}] must be a mapping of {', '.join(MEMBER_KEYS)}; got {m!r}")
            members.append(FitMember(str(m["name"]), tuple(int(k) for k in m["ks"]),
                                     tuple(float(a) for a in m["alpha_bars"]), int(m["receptive_field"]),
                                     bool(m.get("attention", False)), int(m.get("allowed", 10**6))))
            if m.get("source"):
                sources[str(m["name"])] = str(m["source"])
    except (KeyError, TypeError, ValueError) as err:
        raise ValueError(f"rule file {str(path)!r}: {err}") from err
    return RuleFile(rule, tuple(members), raw.get("commit"), str(raw.get("fitted", "")), sources, path)

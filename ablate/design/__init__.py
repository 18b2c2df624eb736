"""Design before training: predict what architectures will generate with the oracle, then verify by training.

>>> result = run_design_study("sweeps/design_before_training.yaml")          # every dataset it names
>>> result.comparisons[0].correlations["artefact_rate"].rho                   # Spearman, predicted vs measured
>>> result.report["html"]                                                     # runs/sweeps/<name>/report.html

Each dataset is an Optuna study of the sweep machinery (``ablate.sweep``) with one trial per
architecture (``kind: design``): resumable, several workers, a W&B run per trial.
"""
from ablate.design.compare import BAR, Comparison, Correlation, compare, spearman
from ablate.design.mapping import FitMember, MappingRule, Prediction, fit_rule, predict_oracle
from ablate.design.study import DesignResult, run_design_study

__all__ = ["run_design_study", "DesignResult", "MappingRule", "Prediction", "predict_oracle", "fit_rule", "FitMember",
           "compare", "spearman", "Comparison", "Correlation", "BAR"]

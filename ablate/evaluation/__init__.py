"""Evaluation: how well does the oracle predict what a trained network generates?

>>> from ablate.evaluation import EvalConfig, evaluate_checkpoint
>>> result = evaluate_checkpoint("runs/train/NAME/checkpoints/final.ckpt", EvalConfig(seeds=32))
>>> result.summary["els"]["median_r2"], result.summary["ideal"]["median_r2"]
"""
from ablate.evaluation.agreement import SamplerAgreement, median_ci, run_agreement
from ablate.evaluation.calibrate import Calibration, calibrate
from ablate.evaluation.pipeline import (EvalConfig, EvalResult, Subject, checkpoint_subject, eval_config, evaluate,
                                  evaluate_checkpoint, evaluate_source, network_subject)

__all__ = ["EvalConfig", "eval_config", "EvalResult", "Subject", "checkpoint_subject", "evaluate", "evaluate_checkpoint",
           "evaluate_source", "network_subject", "Calibration", "calibrate",
           "run_agreement", "SamplerAgreement", "median_ci"]

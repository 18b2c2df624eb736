"""Optuna sweeps defined as data (``sweeps/*.yaml``), tracked in W&B; ``python -m ablate.sweep --help``."""
from ablate.sweep.definition import SweepDefinition, load_definition, parse_definition

__all__ = ["SweepDefinition", "load_definition", "parse_definition"]

"""The theory registry: a theory registered in one place is a machine everywhere (config, oracle, league,
calibration, unknown-machine messages), and the README's example of adding one works as written."""
from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

from ablate.oracle import OracleConfig, all_theories, build_oracle, machine_names
from ablate.oracle.registry import _THEORIES

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def readme_theory():
    """The README's 'Adding a theory' code, run as written (registering 'mine'), then unregistered."""
    text = (ROOT / "README.md").read_text()
    code = re.search(r"\*\*Adding a theory\*\*.*?```python\n(.*?)```", text, re.S).group(1)
    namespace: dict = {}
    exec(compile(code, "README.md", "exec"), namespace)  # noqa: S102 (our own README)
    yield namespace
    _THEORIES.pop("mine", None)


def images(n=6, size=6, seed=0):
    g = torch.Generator().manual_seed(seed)
    return torch.rand((n, 1, size, size), generator=g, dtype=torch.float64) * 2 - 1


def test_every_file_of_the_theories_package_is_registered_in_league_order():
    files = sorted(p.stem for p in (ROOT / "ablate" / "oracle" / "theories").glob("*.py") if p.stem != "__init__")
    assert sorted(machine_names()) == files
    assert machine_names()[:4] == ("ideal", "ls", "els", "es")  # the league's order is each theory's declaration
    assert all_theories()["ideal"].figure_prefix == "is" and all_theories()["els"].figure_prefix == "els"


def test_a_theory_added_in_one_place_is_a_machine_everywhere(readme_theory):
    from ablate.evaluation import EvalConfig

    assert "mine" in machine_names()
    z = images()
    x = torch.randn(3, 1, 6, 6, dtype=torch.float64)
    same = build_oracle(OracleConfig(machine="mine", dtype="float64"), z).denoise(x, 0.4)
    ideal = build_oracle(OracleConfig(machine="ideal", dtype="float64"), z).denoise(x, 0.4)
    assert torch.allclose(same, ideal, atol=1e-12)  # sharpness 1: the IS machine, a known answer
    sharp = build_oracle(OracleConfig(machine="mine", sharpness=2.0, dtype="float64"), z)
    assert sharp.config.sharpness == 2.0 and not torch.allclose(sharp.denoise(x, 0.4), ideal)
    assert EvalConfig(machines=("els", "mine")).machines == ("els", "mine")  # the league takes it
    with pytest.raises(ValueError, match="sharpness applies to machine 'mine' only, got machine='els'"):
        OracleConfig(machine="els", sharpness=2.0)
    with pytest.raises(ValueError, match="machine='min' is not allowed; choose one of .*'mine'.* \\(did you mean"):
        OracleConfig(machine="min")


def test_a_theory_knob_reaches_the_sweeps_by_name():
    """Every theory's own knobs are oracle-sweep knobs, aliased to the oracle config's key."""
    from ablate.sweep.oracle_kind import KIND, build

    for theory in all_theories().values():
        for name in theory.knob_names:
            assert KIND.knobs[name] == f"oracle.{name}"
    config = build(None, {"machine": "scfdm", "num_noise": 3, "k": 5})["oracle"]
    assert (config.machine, config.knob("num_noise"), config.patch_size) == ("scfdm", 3, 5)
    schedule = build(None, {"k_min": 7, "k_max": 5})["oracle"].patch_size  # inverted range: constant k_min
    assert (schedule.k_min, schedule.k_max) == (7, 7)

import sys
from pathlib import Path

import pytest
import torch
import yaml

sys.path.insert(0, str(Path(__file__).parent))


@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    """Work in ``tmp_path`` (``runs/`` lands there) with W&B offline; returns the folder."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    return tmp_path


def write_definition(folder: Path, raw: dict, sort_keys: bool = False) -> Path:
    """A sweep or study definition ``raw`` written as ``<folder>/<name>.yaml`` (keys in their order, or sorted)."""
    path = folder / f"{raw['name']}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=sort_keys))
    return path


@pytest.fixture
def tiny_train():
    """Three 2-channel 6x5 images in [-1, 1] with labels, deterministic."""
    g = torch.Generator().manual_seed(0)
    return torch.rand(3, 2, 6, 5, generator=g) * 2 - 1, torch.tensor([0, 1, 0])

"""Threads: one setting for torch and OpenMP, from a flag or ABLATE_THREADS, applied by every entry point."""
import os
import subprocess
import sys

import pytest
import torch

from ablate.threads import apply_threads, share


def test_apply_threads_sets_torch_and_child_processes(monkeypatch):
    before = torch.get_num_threads()
    monkeypatch.setenv("OMP_NUM_THREADS", "7")
    try:
        assert apply_threads(1) == 1
        assert torch.get_num_threads() == 1 and os.environ["OMP_NUM_THREADS"] == "1"
        assert os.environ["ABLATE_THREADS"] == "1"
    finally:
        torch.set_num_threads(before)
        monkeypatch.delenv("ABLATE_THREADS", raising=False)


def test_bad_thread_counts_are_refused(monkeypatch):
    with pytest.raises(ValueError, match="positive integer"):
        apply_threads(0)
    monkeypatch.setenv("ABLATE_THREADS", "many")
    with pytest.raises(ValueError, match="ABLATE_THREADS='many' must be a positive integer"):
        apply_threads(None)


def test_workers_share_the_cores():
    cores = os.cpu_count() or 1
    assert share(1) == cores and share(cores * 4) == 1


def test_entry_points_take_threads_from_the_environment(tmp_path):
    env = {**os.environ, "ABLATE_THREADS": "1"}
    out = subprocess.run([sys.executable, "train.py", "--print-config", "data.n=50"], capture_output=True, text=True,
                         env=env, timeout=120, cwd=os.path.dirname(os.path.dirname(__file__)))
    assert out.returncode == 0 and "name: mnist5k" in out.stdout and "n: 50" in out.stdout
    for script in ("train.py", "evaluate.py"):
        help_text = subprocess.run([sys.executable, script, "--help"], capture_output=True, text=True, timeout=120,
                                   cwd=os.path.dirname(os.path.dirname(__file__))).stdout
        assert "--threads" in help_text

"""Training with Lightning on tiny real data: the loss falls, resuming is exact, W&B records the run,
and bad input is refused clearly."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from ablate.data import load_dataset
from ablate.sampling import sample
from ablate.training import load_checkpoint, load_config, read_checkpoint, run
from ablate.training.module import DiffusionModule

TINY = ["data.name=digits", "data.n=40", "data.image_size=null", "model.depth=2", "model.width=16", "batch_size=8",
        "epoch_images=32", "sample_seeds=4", "sample_steps=4", "progress=false", "wandb.mode=disabled"]


def tiny(tmp_path, *overrides, name="run"):
    return load_config(None, TINY + [f"out={tmp_path}", f"name={name}", *overrides])


def fixed_loss(checkpoint):
    """Diffusion loss of the raw (non-EMA) weights on 64 held-out digits with fixed noise."""
    model = load_checkpoint(checkpoint, ema=False)
    module = DiffusionModule(model.backbone, model.config, {})
    x0 = load_dataset(model.config.data).heldout[:64]
    with torch.no_grad():
        return module.diffusion_loss(x0, torch.full((64,), -1), torch.Generator().manual_seed(0)).item()


def test_loss_decreases_on_a_fixed_tiny_set(tmp_path):
    start = run(tiny(tmp_path, "max_steps=1", "optim.warmup_steps=0", name="start"))
    trained = run(tiny(tmp_path, "max_steps=60", "optim.warmup_steps=0", name="trained"))
    before, after = fixed_loss(start.checkpoint), fixed_loss(trained.checkpoint)
    assert after < 0.6 * before, (before, after)
    assert trained.steps == 60 and trained.samples.is_file()
    assert (trained.run_dir / "config.yaml").is_file() and (trained.run_dir / "metrics.csv").is_file()


def test_resume_continues_exactly(tmp_path):
    """4 steps + resume to 8 gives the same raw and EMA weights as 8 uninterrupted steps (CPU)."""
    common = ["optim.lr_schedule=constant", "optim.warmup_steps=3", "checkpoint_every=1", "val_every=1"]
    whole = run(tiny(tmp_path, "max_steps=8", *common, name="whole"))
    half = run(tiny(tmp_path, "max_steps=4", *common, name="half"))
    epoch_end = half.run_dir / "checkpoints" / "last.ckpt"
    assert read_checkpoint(epoch_end)["global_step"] == 4
    resumed = run(tiny(tmp_path, "max_steps=8", *common, name="half"), resume=epoch_end)
    assert resumed.steps == 8 and resumed.run_dir == half.run_dir
    a, b = read_checkpoint(whole.checkpoint)["state_dict"], read_checkpoint(resumed.checkpoint)["state_dict"]
    assert a.keys() == b.keys() and any(k.startswith("ema.module.") for k in a)
    for key in a:
        assert torch.equal(a[key], b[key]), key


def test_conditional_run_samples_each_class(tmp_path):
    result = run(tiny(tmp_path, "max_steps=3", "conditional=true", name="cond"))
    model = load_checkpoint(result.checkpoint)
    assert model.num_classes == 10 and model.image_shape == (1, 8, 8)
    out = sample(model.denoiser(), [0, 1], model.image_shape, steps=3, labels=torch.tensor([3, 4])).samples
    assert out.shape == (2, 1, 8, 8) and out.abs().max() <= 1


def test_wandb_offline_run_holds_the_logged_keys(tmp_path, monkeypatch):
    monkeypatch.delenv("WANDB_API_KEY", raising=False)
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("NETRC", str(tmp_path / "no-netrc"))
    result = run(tiny(tmp_path, "max_steps=8", "wandb.mode=auto", "val_every=1", "sample_every=1", name="wb"))
    runs = list((result.run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1 and result.wandb_dir == runs[0]
    wandb_cli = Path(sys.executable).parent / "wandb"
    out = subprocess.run([str(wandb_cli), "leet", "inspect", "--json", str(runs[0])], capture_output=True,
                         text=True, check=True, timeout=120).stdout
    records = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    keys = set().union(*(r["history"]["item"].keys() for r in records if r["type"] == "history"))
    assert {"train/loss", "val/loss", "lr-AdamW", "samples.filenames"} <= keys
    config = next(r for r in records if r["type"] == "run")["run"]["config"]["update"]
    assert config["model"]["depth"] == 2 and config["data"]["name"] == "digits"


def test_unknown_config_key_names_the_nearest(tmp_path):
    with pytest.raises(ValueError, match="unknown config key 'model.widht'; did you mean 'model.width'"):
        tiny(tmp_path, "model.widht=8")
    with pytest.raises(ValueError, match="backbone='vit' is not allowed"):
        tiny(tmp_path, "model.name=vit")
    with pytest.raises(ValueError, match="dataset name='imagenet' is not allowed"):
        tiny(tmp_path, "data.name=imagenet")


def test_unet_on_an_indivisible_image_size_is_refused(tmp_path):
    with pytest.raises(ValueError, match="divisible by 2\\*\\*2 = 4; got 14x14"):
        run(tiny(tmp_path, "data.name=mnist5k", "data.n=20", "data.image_size=14", "model.name=unet",
                 "model.depth=2", "max_steps=1"))


def test_corrupt_and_foreign_checkpoints_are_clear_errors(tmp_path):
    good = run(tiny(tmp_path, "max_steps=2", name="good")).checkpoint
    truncated = tmp_path / "truncated.ckpt"
    truncated.write_bytes(good.read_bytes()[:2000])
    garbage = tmp_path / "garbage.ckpt"
    garbage.write_bytes(b"not a checkpoint at all")
    for path in (truncated, garbage):
        with pytest.raises(ValueError, match="corrupt, truncated or not a PyTorch checkpoint"):
            load_checkpoint(path)
    empty = tmp_path / "empty.ckpt"
    empty.write_bytes(b"")
    with pytest.raises(ValueError, match="is empty \\(0 bytes\\)"):
        load_checkpoint(empty)
    pickled = tmp_path / "pickled.ckpt"
    torch.save({"module": torch.nn.Linear(2, 2)}, pickled)
    with pytest.raises(ValueError, match="pickled Python objects, which ablate never unpickles") as info:
        load_checkpoint(pickled)
    assert "weights_only=False" not in str(info.value) and "still be loaded" not in str(info.value)
    plain = tmp_path / "plain.ckpt"
    torch.save({"weights": torch.zeros(3)}, plain)
    with pytest.raises(ValueError, match="not an ablate training checkpoint"):
        load_checkpoint(plain)
    with pytest.raises(ValueError, match="does not exist"):
        load_checkpoint(tmp_path / "missing.ckpt")
    with pytest.raises(ValueError, match="other settings, which a resumed run cannot change.*model.width: 16 -> 24"):
        run(tiny(tmp_path, "max_steps=4", "model.width=24", name="good"), resume=good)


def test_mismatched_weights_are_named(tmp_path):
    good = run(tiny(tmp_path, "max_steps=2", name="w")).checkpoint
    ckpt = torch.load(good, weights_only=True)
    ckpt["ablate"]["config"]["model"]["depth"] = 3  # the config now describes another network
    edited = tmp_path / "edited.ckpt"
    torch.save(ckpt, edited)
    with pytest.raises(ValueError, match="does not fit the architecture its config describes"):
        load_checkpoint(edited)


def test_every_preset_file_is_a_valid_config():
    presets = sorted(Path(__file__).parent.parent.glob("configs/*.yaml"))
    assert presets, "configs/ holds the GPU presets"
    for path in presets:
        cfg = load_config(path)
        assert cfg.max_steps >= 1, path


def test_agreement_with_the_oracle_is_logged_during_training(tmp_path):
    import csv

    result = run(tiny(tmp_path, "max_steps=8", "agreement_every=1", name="agree"))
    rows = [r for r in csv.DictReader(open(result.run_dir / "metrics.csv")) if r.get("agreement/els_r2")]
    assert len(rows) == 2  # one per epoch of 4 steps
    for r in rows:
        assert 0.0 <= float(r["agreement/els_r2"]) <= 1.0 and 0.0 <= float(r["agreement/ideal_r2"]) <= 1.0
    with pytest.raises(ValueError, match="agreement_every"):
        tiny(tmp_path, "agreement_every=0")


def test_an_override_changes_its_key_only_at_every_depth(tmp_path):
    base = load_config(None)
    for item, key, unchanged in [("data.n=50", ("data", "n"), [("data", "image_size"), ("data", "name")]),
                                 ("model.depth=2", ("model", "depth"), [("model", "width"), ("model", "padding")]),
                                 ("optim.lr=1e-4", ("optim", "lr"), [("optim", "warmup_steps"), ("optim", "ema_decay")]),
                                 ("wandb.mode=disabled", ("wandb", "mode"), [("wandb", "project")]),
                                 ("max_steps=10", ("max_steps",), [("batch_size",), ("data", "n")])]:
        config = load_config(None, [item])
        get = lambda c, path: c if not path else get(getattr(c, path[0]), path[1:])  # noqa: E731
        assert get(config, key) != get(base, key), item
        for other in unchanged:
            assert get(config, other) == get(base, other), (item, other)
    assert load_config(None, ["data.n=50"]).data.image_size == 14  # the quick preset's, kept
    assert load_config(None, ["data.image_size=null"]).data.image_size is None
    preset = tmp_path / "p.yaml"
    preset.write_text("data: {name: digits}\noptim: {lr: 1.0e-3}\n")
    config = load_config(preset, ["optim.warmup_steps=7"])
    assert (config.data.name, config.data.n, config.optim.lr, config.optim.warmup_steps) == ("digits", 200, 1e-3, 7)
    assert config.optim.ema_decay == base.optim.ema_decay


def test_resume_takes_the_checkpoints_own_config_and_refuses_other_data(tmp_path, capsys):
    import train

    first = run(tiny(tmp_path, "max_steps=4", "data.n=30", name="r")).checkpoint
    train.main(["--resume", str(first), "max_steps=8"])  # no data.* or model.* given: the run's own are used
    resumed = load_checkpoint(capsys.readouterr().out.strip().splitlines()[-1])
    assert resumed.step == 8 and resumed.config.data.n == 30 and resumed.config.data.image_size is None
    with pytest.raises(SystemExit, match=r"cannot change.*data.image_size: None -> 14.*data.n: 30 -> 200"):
        train.main(["--resume", str(first), "data.image_size=14", "data.n=200"])
    with pytest.raises(ValueError, match="continue it with train.py --resume"):
        run(tiny(tmp_path, "max_steps=4", "data.n=30", name="r"))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGKILL], ids=["SIGINT", "SIGKILL"])
def test_an_interrupted_run_resumed_from_its_last_checkpoint_ends_bit_identical(tmp_path, sig):
    args = [a for a in TINY if not a.startswith("epoch_images")] + [
        "epoch_images=64", "max_steps=400", "checkpoint_every=1", "val_every=1", f"out={tmp_path}"]
    root = Path(__file__).parent.parent
    env = {**os.environ, "ABLATE_THREADS": "1"}  # every run on one thread: the same reduction order
    subprocess.run([sys.executable, "train.py", *args, "name=whole"], cwd=root, env=env, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, timeout=600)
    # a shell's background job ignores SIGINT, and children inherit that: give the run the default handling
    cut = subprocess.Popen([sys.executable, "train.py", *args, "name=cut"], cwd=root, env=env,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                           preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    folder = tmp_path / "cut" / "checkpoints"
    deadline = time.time() + 300
    while not (folder / "step0000016.ckpt").exists() and time.time() < deadline and cut.poll() is None:
        time.sleep(0.02)
    time.sleep(0.05)
    cut.send_signal(sig)
    cut.wait(timeout=120)
    assert not (folder / "final.ckpt").exists(), "the run finished before it could be interrupted"
    step = read_checkpoint(folder / "last.ckpt")["global_step"]
    assert 16 <= step < 400 and step % 8 == 0  # an end-of-epoch checkpoint
    out = subprocess.run([sys.executable, "train.py", "--resume", str(folder / "last.ckpt")], cwd=root, env=env,
                         capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-2000:]
    a, b = read_checkpoint(tmp_path / "whole" / "checkpoints" / "final.ckpt"), read_checkpoint(folder / "final.ckpt")
    assert a["global_step"] == b["global_step"] == 400
    for key in a["state_dict"]:
        assert torch.equal(a["state_dict"][key], b["state_dict"][key]), key

"""Sweeps: definitions validated before any trial, exact trial counts, resume without duplicates, failed
trials that do not stall, PostgreSQL workers that survive SIGKILL, and a report a browser renders."""
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import optuna
import pytest
import yaml
from optuna.trial import TrialState

from ablate.sweep import load_definition, parse_definition
from ablate.sweep.definition import dataset_names
from ablate.sweep.storage import counts, create_study, open_storage
from ablate.sweep.workers import run_sweep
from conftest import write_definition

ROOT = Path(__file__).parent.parent
TINY = dict(name="tiny", kind="oracle", data={"name": "digits", "n": 40}, fixed={"machine": "els"},
            space={"k_min": {"int": [1, 3], "step": 2}, "k_max": {"int": [3, 7], "step": 2},
                   "boundary": {"choice": ["zeros", "circular"]}},
            objectives={"coherence": "maximize", "artefact_rate": "minimize"},
            sampler={"name": "random", "seed": 0}, trials=4, seeds=4, steps=4)


def write(tmp_path, **changes):
    return load_definition(write_definition(tmp_path, {**TINY, **changes}, sort_keys=True))


@pytest.mark.parametrize("change, message", [
    (dict(trails=3), "unknown key 'trails' \\(did you mean 'trials'\\?\\)"),
    (dict(space={"k_min": {"int": [5, 3]}}), "empty range \\[5, 3\\]"),
    (dict(space={"k_max": {"choice": []}}), "choice is empty"),
    (dict(objectives={"coherance": "maximize"}), "unknown objective 'coherance' \\(did you mean 'coherence'\\?\\)"),
    (dict(objectives={"coherence": "up"}), "choose maximize or minimize"),
    (dict(fixed={"patch": 3}), "unknown oracle knob 'patch'"),
    (dict(space={"shape": {"float": [0.0, 2.0], "log": True}}), "log-scaled, so its range must be positive"),
    (dict(prune=True), "prune needs a train sweep with exactly one objective"),
    (dict(sampler={"name": "grid"}, space={"shape": {"float": [0.5, 2.0]}}), "grid sampler needs int or choice"),
    (dict(kind="cluster"), "kind='cluster' is not allowed"),
    (dict(fixed={"machine": "els", "k_min": 3}), "both fixed and searched"),
])
def test_bad_definitions_name_the_problem(change, message):
    with pytest.raises(ValueError, match=message):
        parse_definition({**TINY, **change})


def test_shipped_sweeps_are_valid():
    names = {p.stem for p in (ROOT / "sweeps").glob("*.yaml")}
    assert {"oracle_patch_schedule", "oracle_equivariance", "train_resnet_depth"} <= names
    for path in (ROOT / "sweeps").glob("*.yaml"):
        for dataset in dataset_names(path) or [None]:
            d = load_definition(path, dataset)
            assert d.name == (f"{path.stem}-{dataset}" if dataset else path.stem) and d.trials >= 1


def test_sweep_runs_resumes_without_duplicates_and_tracks_every_trial(in_tmp):
    import wandb

    d = write(in_tmp)
    study = run_sweep(d, progress=False)
    assert counts(study)["complete"] == 4 and len(study.get_trials()) == 4
    assert wandb.run is None  # every W&B run was finished
    runs = list((in_tmp / "runs/sweeps/tiny/wandb_dirs/wandb").glob("offline-run-*"))
    assert len(runs) == 5  # one per trial and the summary
    again = run_sweep(d, progress=False)  # the same study, nothing new to do
    assert len(again.get_trials()) == 4
    more = run_sweep(d, trials=6, progress=False)
    assert counts(more)["complete"] == 6 and len(more.get_trials()) == 6
    t = more.trials[0]
    assert {"coherence", "artefact_rate", "novelty", "grid"} <= set(t.user_attrs)
    assert 0 <= t.values[0] <= 1 and Path(t.user_attrs["grid"]).is_file()


def test_failed_trials_are_recorded_and_do_not_stall(in_tmp, monkeypatch, capsys):
    import wandb

    import dataclasses

    from ablate.sweep import oracle_kind
    from ablate.sweep.kinds import _KINDS

    real = oracle_kind.run

    def fails_for_ls(ctx, knobs, tag, trial=None):  # a failure no validation can foresee (e.g. out of memory)
        if knobs["machine"] == "ls":
            raise MemoryError("out of memory in the LS trial")
        return real(ctx, knobs, tag, trial)

    monkeypatch.setitem(_KINDS, "oracle", dataclasses.replace(oracle_kind.KIND, run=fails_for_ls))
    d = write(in_tmp, fixed={}, space={"machine": {"choice": ["els", "ls"]}}, sampler={"name": "grid", "seed": 0},
              trials=2)
    study = run_sweep(d, progress=False)
    c = counts(study)
    assert c["complete"] == 1 and c["fail"] == 1 and c["waiting"] == c["running"] == 0
    failed = next(t for t in study.trials if t.state == TrialState.FAIL)
    assert failed.params["machine"] == "ls" and "out of memory in the LS trial" in failed.user_attrs["error"]
    assert wandb.run is None
    from ablate.sweep.__main__ import main  # status shows each trial, the failed one with its error
    main(["status", str(d.path)])
    out = capsys.readouterr().out
    assert "tiny (sqlite:///" in out and "1 complete, 1 fail" in out
    assert f"trial {failed.number} machine=ls: failed: MemoryError: out of memory in the LS trial" in out
    assert "machine=els: complete in " in out and "coherence=" in out


def _postgres_url():
    import psycopg
    try:
        conn = psycopg.connect(host="127.0.0.1", port=5432, user="postgres", dbname="postgres", connect_timeout=3,
                               autocommit=True)
    except psycopg.OperationalError as err:
        pytest.skip(f"no PostgreSQL server answers on 127.0.0.1:5432 ({str(err).splitlines()[0]})")
    name = f"ablate_test_{os.getpid()}_{int(time.time())}"
    conn.execute(f"CREATE DATABASE {name}")
    return conn, name


def test_postgres_workers_survive_a_sigkill(in_tmp):
    """Two workers on a throw-away PostgreSQL database; one is killed mid-trial; the study still ends
    with exactly the requested completed trials (the killed one is retried), none duplicated."""
    conn, db = _postgres_url()
    url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    try:
        d = write(in_tmp, name="pg", trials=6, seeds=16, steps=12)
        from ablate.metrics import build_suite
        from ablate.sweep.storage import create_study
        build_suite(d.data)  # cache the classifier before the workers start
        create_study(d, open_storage(url, heartbeat=1), d.trials)
        cmd = [sys.executable, "-m", "ablate.sweep", "worker", str(d.path), "--storage", url, "--heartbeat", "1"]
        workers = [subprocess.Popen(cmd, cwd=in_tmp) for _ in range(2)]
        study = optuna.load_study(study_name="pg", storage=open_storage(url, heartbeat=1))
        victim, deadline = None, time.time() + 120
        while victim is None and time.time() < deadline:
            for t in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
                pid = int(t.user_attrs.get("worker", ":0").split(":")[1])
                if pid in {w.pid for w in workers}:
                    victim = next(w for w in workers if w.pid == pid)
                    killed_trial = t.number
                    break
            time.sleep(0.02)
        assert victim is not None, "no worker was ever seen running a trial"
        os.kill(victim.pid, signal.SIGKILL)
        survivor = next(w for w in workers if w is not victim)
        assert survivor.wait(timeout=180) == 0
        trials = study.get_trials(deepcopy=False)
        complete = [t for t in trials if t.state == TrialState.COMPLETE]
        assert len(complete) == 6
        killed = next(t for t in trials if t.number == killed_trial)
        assert killed.state == TrialState.FAIL  # marked stale by the heartbeat ...
        retried = [t for t in complete if t.system_attrs.get("failed_trial") == killed_trial]
        assert len(retried) == 1 and retried[0].params == killed.params  # ... and run again exactly once
        assert len({t.number for t in complete}) == 6
    finally:
        for w in locals().get("workers", []):
            if w.poll() is None:
                w.kill()
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.close()


def test_report_renders_in_a_browser(in_tmp):
    from ablate.sweep.report import write_report
    d = write(in_tmp)
    run_sweep(d, progress=False)
    report = write_report(d, f"sqlite:///{in_tmp}/runs/sweeps/tiny.db").resolve()
    page = report.read_text()
    assert page.count("<tr class='trial complete'>") == 4 and "data:image/png;base64," in page
    chromium = shutil.which("chromium") or shutil.which("chromium-browser")
    if chromium is None:
        pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
    flags = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
             "--disable-component-update", "--disable-sync", "--no-first-run", f"--user-data-dir={in_tmp}/chrome"]
    dom = subprocess.run([chromium, *flags, "--dump-dom", report.as_uri()], capture_output=True, text=True,
                         timeout=120).stdout
    assert "Sweep tiny" in dom and dom.count("trial complete") == 4 and "4 complete" in dom
    shot = in_tmp / "report.png"
    subprocess.run([chromium, *flags, f"--screenshot={shot}", "--window-size=1300,1800", report.as_uri()],
                   capture_output=True, timeout=120)
    assert shot.is_file() and shot.stat().st_size > 10_000


def test_dashboard_serves_the_study(in_tmp):
    import json
    import socket
    import urllib.request

    d = write(in_tmp)
    run_sweep(d, progress=False)
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    server = subprocess.Popen([sys.executable, "-m", "ablate.sweep", "dashboard", str(d.path), "--port", str(port)],
                              cwd=in_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline, studies = time.time() + 60, None
        while studies is None and time.time() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/api/studies", timeout=2) as r:
                    studies = json.loads(r.read())
            except OSError:
                time.sleep(0.3)
        assert studies is not None, "the dashboard never answered"
        assert "tiny" in json.dumps(studies), studies
        chromium = shutil.which("chromium") or shutil.which("chromium-browser")
        if chromium is None:
            pytest.skip("Debian's chromium is not installed (.ci/run installs it)")
        dom = subprocess.run([chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                              "--disable-background-networking", "--disable-component-update", "--disable-sync",
                              f"--user-data-dir={in_tmp}/chrome", "--virtual-time-budget=15000", "--dump-dom",
                              f"http://127.0.0.1:{port}/dashboard/"], capture_output=True, text=True, timeout=120).stdout
        assert "tiny" in dom
    finally:
        server.kill()
        server.wait()


def test_local_workers_on_sqlite_give_exact_counts_and_different_proposals(in_tmp):
    from ablate.sweep.storage import make_sampler

    d = write(in_tmp, space={"shape": {"float": [0.5, 2.0]}}, fixed={"machine": "els", "k_min": 3, "k_max": 5})
    study = optuna.create_study(sampler=make_sampler(d))
    first = [study.ask().suggest_float("shape", 0.5, 2.0) for _ in range(3)]
    again = optuna.create_study(sampler=make_sampler(d)).ask().suggest_float("shape", 0.5, 2.0)
    assert len(set(first)) == 3 and again == first[0]  # new knobs per trial number, reproducible per number
    study = run_sweep(d, workers=2, progress=False)
    assert counts(study)["complete"] == 4 and len(study.get_trials()) == 4
    assert len({t.params["shape"] for t in study.trials}) == 4


def _knob_sets(study):
    return [tuple(sorted(t.params.items())) for t in study.trials if t.state == TrialState.COMPLETE]


def test_a_killed_rerun_and_topped_up_sweep_never_repeats_a_knob_set(in_tmp):
    d = write(in_tmp, space={"shape": {"float": [0.5, 2.0]}}, fixed={"machine": "els", "k_min": 3, "k_max": 5},
              sampler={"name": "tpe", "seed": 0}, trials=4, seeds=8, steps=10)
    cmd = [sys.executable, "-m", "ablate.sweep", "run", str(d.path), "--heartbeat", "1"]
    proc = subprocess.Popen(cmd, cwd=in_tmp, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    for line in proc.stdout:  # kill it as soon as one trial is complete
        if " complete in " in line:
            break
    proc.kill()
    proc.wait()
    url = f"sqlite:///{in_tmp}/runs/sweeps/tiny.db"
    study = run_sweep(d, url, heartbeat=1, progress=False)  # re-run: the killed trial goes stale and is redone
    assert counts(study)["complete"] == 4
    study = run_sweep(d, url, trials=8, heartbeat=1, progress=False)  # top up
    sets = _knob_sets(study)
    assert len(sets) == 8 and len(set(sets)) == 8, sets


def test_two_concurrent_runs_on_a_fresh_sqlite_file_both_succeed_with_exactly_n(in_tmp):
    d = write(in_tmp, space={"shape": {"float": [0.5, 2.0]}}, fixed={"machine": "els", "k_min": 3, "k_max": 5},
              trials=4, seeds=4, steps=4)
    from ablate.metrics import build_suite

    build_suite(d.data)  # the reference classifier, cached once (not the subject of this test)
    cmd = [sys.executable, "-m", "ablate.sweep", "run", str(d.path)]
    env = {**os.environ, "ABLATE_THREADS": "1"}
    procs = [subprocess.Popen(cmd, cwd=in_tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for _ in range(2)]
    outs = [p.communicate(timeout=600)[0] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    study = optuna.load_study(study_name="tiny", storage=open_storage(f"sqlite:///{in_tmp}/runs/sweeps/tiny.db"))
    assert counts(study)["complete"] == 4 and len(study.trials) == 4
    assert len(set(_knob_sets(study))) == 4


def test_training_trial_is_pruned_through_the_lightning_callback(in_tmp):
    """A real study whose pruner stops anything above a tiny validation loss: optuna-integration's Lightning
    callback must end the training trial with TrialPruned after its first validation."""
    from ablate.sweep.context import TrialContext
    from ablate.sweep.train_kind import run_train_trial

    d = parse_definition({**TINY, "kind": "train", "fixed": {"depth": 1, "width": 8, "max_steps": 2000},
                          "space": {}, "objectives": {"els_r2": "maximize"}, "prune": True})
    ctx = TrialContext.build(d, in_tmp / "out")
    study = optuna.create_study(pruner=optuna.pruners.ThresholdPruner(upper=1e-9))
    trial = study.ask()
    with pytest.raises(optuna.TrialPruned):
        run_train_trial(ctx, dict(d.fixed), "pruned", trial)
    reported = study.trials[0].intermediate_values
    assert len(reported) == 1 and next(iter(reported.values())) > 1e-9


def test_status_and_report_of_a_study_never_run_say_how_to_start_it_and_write_nothing(in_tmp):
    d = write(in_tmp)
    before = sorted(p for p in in_tmp.rglob("*"))
    for command in ("status", "report"):
        out = subprocess.run([sys.executable, "-m", "ablate.sweep", command, str(d.path)], cwd=in_tmp,
                             capture_output=True, text=True, timeout=120)
        assert out.returncode != 0 and "'tiny' has not been run yet" in out.stderr
        assert f"start it with: python -m ablate.sweep run {d.path}" in out.stderr
    assert sorted(p for p in in_tmp.rglob("*")) == before  # looking wrote nothing, not even an empty database
    from ablate.design.__main__ import main as study

    design = ROOT / "sweeps" / "design_before_training.yaml"
    with pytest.raises(SystemExit, match="start it with: python -m ablate.design design-before-training --dataset"):
        study(["design-before-training", "--definition", str(design), "--report-only"])
    one_d = ROOT / "sweeps" / "design_before_training_1d.yaml"  # not the default file: the command names it
    with pytest.raises(SystemExit, match="start it with: python -m ablate.design design-before-training "
                                         f"--definition {one_d} --dataset pulses"):
        study(["design-before-training", "--definition", str(one_d), "--report-only"])
    assert sorted(p for p in in_tmp.rglob("*")) == before


@pytest.mark.parametrize("change, message", [
    (dict(fixed={"machine": "elss"}), "machine='elss' is not allowed; choose one of"),
    (dict(fixed={"machine": "els", "boundary": "circular"}, space={"k_max": {"int": [5, 19], "step": 2}}),
     "k_max=19 would fail: patch size 9 is too large for machine 'els' with boundary 'circular' on 8x8 images; "
     "allowed: odd k <= 7"),
    (dict(kind="train", fixed={"name": "unet", "depth": 4}, space={"lr": {"float": [1e-4, 1e-2]}},
          objectives={"els_r2": "maximize"}), r"needs image sides divisible by 2\*\*4 = 16; got 8x8"),
    (dict(space={"k": {"int": [3, 5], "step": 2}, "k_max": {"int": [5, 7], "step": 2}}), "both set the patch size"),
])
def test_a_space_that_would_fail_is_refused_before_any_trial_and_the_cli_exits_nonzero(in_tmp, change, message):
    path = in_tmp / "tiny.yaml"
    path.write_text(yaml.safe_dump({**TINY, **change}))
    with pytest.raises(ValueError, match=message):
        run_sweep(load_definition(path), progress=False)
    assert not (in_tmp / "runs").exists() or not any((in_tmp / "runs").rglob("*.db"))  # nothing was queued
    out = subprocess.run([sys.executable, "-m", "ablate.sweep", "run", str(path)], cwd=in_tmp,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and "ablate.sweep:" in out.stderr


def test_a_run_whose_trials_all_fail_exits_nonzero(in_tmp, monkeypatch):
    import dataclasses

    from ablate.sweep import oracle_kind
    from ablate.sweep.kinds import _KINDS

    def broken(ctx, knobs, tag, trial=None):
        raise RuntimeError("the machine broke")

    monkeypatch.setitem(_KINDS, "oracle", dataclasses.replace(oracle_kind.KIND, run=broken))
    with pytest.raises(ValueError, match=r"every trial of 'tiny' failed \(4\); the first: RuntimeError: the machine"):
        run_sweep(write(in_tmp), progress=False)


def test_a_changed_definition_never_mixes_into_the_old_study(in_tmp, capsys):
    from ablate.sweep.__main__ import main as cli

    d = write(in_tmp, trials=2)
    run_sweep(d, progress=False)
    changed = write(in_tmp, trials=2, fixed={"machine": "els", "boundary": "circular"},
                    space={"k_min": {"int": [1, 3], "step": 2}, "k_max": {"int": [3, 5], "step": 2}})
    with pytest.raises(ValueError, match=r"another condition.*fixed.boundary: \(absent\) -> 'circular'.*"
                                         r"space.k_max.high: 7 -> 5.*--new-version"):
        run_sweep(changed, progress=False)
    with pytest.raises(SystemExit, match="another condition"):
        cli(["status", str(changed.path)])  # looking at the changed definition does not show the old trials
    study = run_sweep(changed, progress=False, new_version=True)
    assert study.study_name == "tiny-v2" and counts(study)["complete"] == 2
    assert all(t.params["k_max"] <= 5 for t in study.trials)
    cli(["status", str(changed.path)])  # now finds its own version, and shows the fixed knobs
    lines = capsys.readouterr().out.splitlines()
    status = lines[next(i for i, line in enumerate(lines) if line.startswith("tiny-v2 (")):]
    assert "fixed: boundary=circular, machine=els" in status[2] and "coherence (maximize)" in status[1]
    again = run_sweep(d, progress=False)  # the old definition (the file now holds the new one) finds its own study
    assert again.study_name == "tiny" and counts(again)["complete"] == 2


def test_training_sweep_trains_scores_and_measures_agreement(in_tmp):
    d = write(in_tmp, name="ttrain", kind="train", fixed={"name": "resnet", "depth": 2, "width": 8, "max_steps": 200},
              space={"padding": {"choice": ["zeros", "circular"]}}, objectives={"els_r2": "maximize"},
              sampler={"name": "grid", "seed": 0}, trials=2, seeds=4, steps=6)
    study = run_sweep(d, progress=False)
    assert counts(study)["complete"] == 2
    assert {t.params["padding"] for t in study.trials} == {"zeros", "circular"}
    for t in study.trials:
        a = t.user_attrs
        assert 0 <= t.values[0] <= 1 and 0 <= a["is_r2"] <= 1 and 0 <= a["coherence"] <= 1
        assert Path(a["checkpoint"]).is_file() and a["train_seconds"] > 0


def test_objectives_take_the_american_spelling_and_errors_read_well():
    d = parse_definition({**TINY, "objectives": {"coherence": "maximize", "artifact_rate": "minimize"}})
    assert list(d.objectives) == ["coherence", "artefact_rate"]
    with pytest.raises(ValueError, match="an oracle trial reports"):
        parse_definition({**TINY, "objectives": {"sharpness": "maximize"}})


def test_everything_a_sweep_writes_goes_under_the_runs_root(in_tmp):
    d = write(in_tmp, trials=1, seeds=2, steps=3)
    out = subprocess.run([sys.executable, "-m", "ablate.sweep", "run", str(d.path), "--runs", "elsewhere"],
                         cwd=in_tmp, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert not (in_tmp / "runs").exists() and not (in_tmp / "wandb").exists()
    root = in_tmp / "elsewhere"
    assert (root / "sweeps" / "tiny.db").is_file() and any((root / "classifiers").iterdir())
    assert any((root / "sweeps" / "tiny" / "grids").iterdir())
    status = subprocess.run([sys.executable, "-m", "ablate.sweep", "status", str(d.path)], cwd=in_tmp,
                            capture_output=True, text=True, timeout=120, env={**os.environ, "ABLATE_RUNS": "elsewhere"})
    assert status.returncode == 0 and status.stdout.startswith("tiny (sqlite:///elsewhere/sweeps/tiny.db): 1 complete")


def test_two_concurrent_runs_on_a_fresh_postgres_database_both_succeed_with_exactly_n(in_tmp):
    conn, db = _postgres_url()
    url = f"postgresql://postgres@127.0.0.1:5432/{db}"
    try:
        d = write(in_tmp, name="pgc", space={"shape": {"float": [0.5, 2.0]}},
                  fixed={"machine": "els", "k_min": 3, "k_max": 5}, trials=4, seeds=4, steps=4)
        from ablate.metrics import build_suite

        build_suite(d.data)
        cmd = [sys.executable, "-m", "ablate.sweep", "run", str(d.path), "--storage", url]
        env = {**os.environ, "ABLATE_THREADS": "1"}
        procs = [subprocess.Popen(cmd, cwd=in_tmp, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                                  text=True) for _ in range(2)]
        outs = [p.communicate(timeout=600)[0] for p in procs]
        assert [p.returncode for p in procs] == [0, 0], outs
        study = optuna.load_study(study_name="pgc", storage=open_storage(url))
        assert counts(study)["complete"] == 4 and len(study.trials) == 4
        assert len(set(_knob_sets(study))) == 4
    finally:
        conn.execute(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")
        conn.close()


def test_the_sweep_machinery_imports_no_study_and_finds_the_design_kind_by_its_entry_point():
    """Imports run one way (#19): loading every sweep module leaves ablate.design unimported; asking for the
    ``design`` kind loads it through the ``ablate.trial_kinds`` entry point."""
    code = ("import sys, ablate.sweep, ablate.sweep.storage, ablate.sweep.workers, ablate.sweep.context, "
            "ablate.sweep.oracle_kind, ablate.sweep.train_kind, ablate.sweep.definition, "
            "ablate.sweep.report, ablate.sweep.__main__\n"
            "assert not [m for m in sys.modules if m.startswith('ablate.design')], 'the sweep imported a study'\n"
            "from ablate.sweep.kinds import trial_kind\n"
            "kind = trial_kind('design')\n"
            "assert kind.run.__module__ == 'ablate.design.kind' and kind.check is not None\n"
            "try:\n    trial_kind('cluster')\nexcept ValueError as err:\n    print(err)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, cwd=ROOT)
    assert out.returncode == 0, out.stderr
    assert "no trial kind 'cluster' is registered (registered: design, oracle, train)" in out.stdout


@pytest.mark.slow  # about a minute; the default suite keeps the training-resume tests of test_training.py
def test_a_retried_training_trial_continues_the_killed_attempts_checkpoint(in_tmp):
    """A worker killed mid-training (a session that ends): its retry continues the newest checkpoint that
    reads (last.ckpt, cut short here, is skipped for the step checkpoint) instead of training from scratch,
    and the trial's training time counts both attempts."""
    d = write(in_tmp, kind="train", fixed={"depth": 1, "width": 8, "max_steps": 600, "batch_size": 8},
              space={}, objectives={"els_r2": "maximize"}, trials=1, seeds=4, steps=4)
    cmd = [sys.executable, "-m", "ablate.sweep", "run", str(d.path), "--heartbeat", "1"]
    proc = subprocess.Popen(cmd, cwd=in_tmp, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    first = in_tmp / "runs" / "sweeps" / "tiny" / "runs" / "trial0000" / "checkpoints"
    deadline = time.time() + 300
    while not (first / "step0000500.ckpt").is_file() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.kill()
    proc.wait()
    assert (first / "step0000500.ckpt").is_file() and not (first / "final.ckpt").exists()
    time.sleep(1)  # let the checkpoint's write finish before cutting last.ckpt short
    (first / "last.ckpt").write_bytes(b"PK\x03\x04 cut short by the kill")
    study = run_sweep(d, f"sqlite:///{in_tmp}/runs/sweeps/tiny.db", heartbeat=1, progress=False)
    done = [t for t in study.get_trials(deepcopy=False) if t.state == TrialState.COMPLETE]
    assert len(done) == 1 and done[0].system_attrs["failed_trial"] == 0
    assert done[0].user_attrs["resumed_from_step"] == 500
    log = (first.parent / "train.log").read_text().strip().splitlines()
    assert len(log) == 1 and "trained steps 500-600 in " in log[0]  # the retry trained only the rest
    resumed_part = float(log[0].split(" in ")[1].split(" s ")[0])
    assert done[0].user_attrs["train_seconds"] > resumed_part  # and counts the first attempt's 500 steps too


def test_a_grid_of_training_trials_is_queued_longest_first(in_tmp):
    """Workers take the oldest queued trial, so a grid of training trials is queued by its measured cost (timed
    optimiser steps of each backbone): the wide, deep ResNet before the one-layer one, whatever the order the
    definition lists them in."""
    from ablate.sweep.workers import trial_costs

    d = write(in_tmp, kind="train", fixed={"max_steps": 100}, space={}, objectives={"els_r2": "maximize"},
              sampler={"name": "grid"}, trials=2,
              architectures={"small": {"name": "resnet", "depth": 1, "width": 8},
                             "big": {"name": "resnet", "depth": 6, "width": 48}})
    lines = []
    cost = trial_costs(d, (1, 8, 8), say=lambda *a, **k: lines.append(a[0]))
    small, big = cost({"arch": "small"}), cost({"arch": "big"})
    assert big > 3 * small > 0
    assert len(lines) == 3 and "arch=small: training about" in lines[1]  # a header, then one line per estimate
    study = create_study(d, open_storage(f"sqlite:///{in_tmp}/q.db"), cost=cost)
    queued = [t.params.get("arch") or t.system_attrs["fixed_params"]["arch"] for t in study.get_trials()]
    assert queued == ["big", "small"]
    assert len(lines) == 3  # each knob set was timed once


def test_a_worker_that_loses_the_last_waiting_trial_to_another_creates_none(in_tmp):
    """The race that once gave 5 trials for 4: a worker sees a waiting trial, another worker takes it, and the
    first one's ``ask`` then made a new trial. Claims wait for the claim lock, so the loser gets nothing."""
    import threading

    from ablate.sweep.claims import storage_lock
    from ablate.sweep.workers import claim

    d = write(in_tmp, trials=1)
    url = f"sqlite:///{in_tmp}/claims.db"
    study = create_study(d, open_storage(url))
    got = {}
    with storage_lock(url, f"{d.name}:claim"):  # another worker holds the lock while it claims
        loser = threading.Thread(target=lambda: got.update(zip(("trial", "counts"), claim(study, url, d.name))))
        loser.start()
        loser.join(timeout=1.0)
        assert loser.is_alive()  # it waits for the lock instead of counting and asking
        winner = study.ask()  # the other worker pops the only waiting trial
    loser.join(timeout=30)
    assert got["trial"] is None and got["counts"]["running"] == 1 and got["counts"]["waiting"] == 0
    assert [t.number for t in study.get_trials()] == [winner.number]  # still exactly the requested one
    trial, c = claim(study, url, d.name)
    assert trial is None and len(study.get_trials()) == 1


def test_a_retried_trial_is_claimed_before_trials_not_started(in_tmp):
    """A killed worker's trial comes back as a waiting copy numbered after the queue; it resumes from the killed
    trial's checkpoints, so the next claim takes it first (Optuna's ``ask`` would take trial 1, then 2)."""
    from ablate.sweep.workers import claim

    d = write(in_tmp, trials=3)
    url = f"sqlite:///{in_tmp}/claims.db"
    storage = open_storage(url, heartbeat=1)
    study = create_study(d, storage)
    first, _ = claim(study, url, d.name)
    assert first.number == 0
    storage.record_heartbeat(first._trial_id)  # its worker beat once, then died
    time.sleep(5)  # past the grace period (3 heartbeats; SQLite times it in whole seconds)
    retry, c = claim(study, url, d.name)
    trials = study.get_trials(deepcopy=False)
    assert trials[0].state == TrialState.FAIL and trials[3].system_attrs["failed_trial"] == 0
    assert retry.number == 3  # the retry, not trial 1
    assert c["waiting"] == 3  # counted before the claim: 1, 2 and the retry
    after, _ = claim(study, url, d.name)
    assert after.number == 1  # then the queue's order


def test_a_data_setting_added_later_at_its_default_keeps_a_studys_condition():
    from ablate.sweep.condition import same

    stored = {"kind": "train", "data": {"name": "mnist5k", "n": 200}, "seeds": 8}
    assert same(stored, {"kind": "train", "data": {"name": "mnist5k", "n": 200, "bracket_kinds": 1}, "seeds": 8})
    assert not same(stored, {"kind": "train", "data": {"name": "mnist5k", "n": 200, "bracket_kinds": 2}, "seeds": 8})
    assert not same(stored, {"kind": "train", "data": {"name": "mnist5k", "n": 100}, "seeds": 8})

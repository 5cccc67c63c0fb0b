"""MultiFruitGANTrainer and train_gan.py end to end, with tiny budgets (28 px, 12 real-sample images per fruit)."""
import json
import os
import sys

import pytest
import torch

from conftest import TINY_FRUITS, TINY_RUN, TINY_RUN_DESCRIPTION, TINY_VERSION, run_script

FRUITS = TINY_FRUITS.split(",")


def train(workdir, *extra, input=None):
    return run_script("train_gan.py", "--workdir", str(workdir), *extra, input=input)


def quick_flags(name="t1", epochs=2):
    return ["--yes", "--dataset-version", TINY_VERSION, "--model-name", name, "--epochs", str(epochs),
            "--batch-size", "8", "--eval-samples", "16", "--milestones", "1", "--device", "cpu"]


def load_json(path):
    return json.loads(path.read_text())


def test_tiny_run_writes_the_models_tree(tiny_run):
    """conftest's tiny_run: train_gan.py with quick_flags(TINY_RUN, 2) and a description, run once per session."""
    workdir, r = tiny_run
    assert TINY_RUN == "t1" and TINY_RUN_DESCRIPTION == "tiny test run"
    model = workdir / "models" / "model_t1"
    info = model / "info"
    for fruit in FRUITS:
        for kind in ("generator", "discriminator"):
            payload = torch.load(model / f"{kind}_{fruit}.pt", weights_only=True)
            assert payload["kind"] == kind and payload["fruit"] == fruit and payload["epoch"] == 2
            assert payload["config"]["resolution"] == 28
        grids = sorted(p.name for p in (model / f"generated_epoch_images_{fruit}").iterdir())
        assert grids == ["epoch_0001.png", "epoch_0002.png"]   # milestone 1 and the last epoch
        hist = load_json(info / f"training_history_{fruit}.json")
        assert [e["epoch"] for e in hist["epochs"]] == [1, 2]
        for e in hist["epochs"]:
            assert all(k in e for k in ("d_loss", "g_loss", "d_real", "d_fake", "seconds"))
            assert 0.0 <= e["d_real"] <= 1.0 and 0.0 <= e["d_fake"] <= 1.0 and e["d_loss"] > 0
        assert [q["epoch"] for q in hist["quality"]] == [1, 2]
        assert 0.0 <= hist["quality"][-1]["recognizability"] <= 1.0
        assert hist["cost"]["epochs"] == 2 and hist["cost"]["cost"]["total"] > 0
        assert hist["cost_summary"]["total"] == pytest.approx(hist["cost"]["cost"]["total"])
        assert (model / "best" / f"generator_{fruit}.pt").exists()
        # every epoch's numbers reach the console too
        assert f"{fruit}" in r.stdout and "D(G(z))" in r.stdout
    cfg = load_json(info / "training_config_t1.json")
    assert cfg["epochs"] == 2 and cfg["batch_size"] == 8 and cfg["fruits"] == FRUITS
    assert cfg["dataset_version"] == TINY_VERSION and cfg["gan_config"]["noise_dim"] == 100
    summary = load_json(info / "training_summary_t1.json")
    assert summary["status"] == "complete" and summary["epochs_done"] == 2
    assert sorted(summary["per_fruit"]) == sorted(FRUITS)
    assert (info / "cost_analysis_report.json").exists()
    desc = (info / "description.txt").read_text()
    assert desc.startswith("tiny test run") or "tiny test run" in desc.splitlines()[0:5].__str__()
    assert "TRAINING COST SUMMARY FOR APPLE" in r.stdout
    assert (model / "checkpoints" / "latest.pt").exists()


def test_existing_model_is_not_overwritten_silently(tiny_run_copy):
    """A finished run t1 (a copy of conftest's tiny_run); the same command again must not touch it."""
    before = (tiny_run_copy / "models/model_t1/generator_apple.pt").read_bytes()
    r = train(tiny_run_copy, *quick_flags(epochs=1), "--no-eval")
    assert r.returncode == 2 and "already exists" in r.stderr and "Traceback" not in r.stderr
    assert (tiny_run_copy / "models/model_t1/generator_apple.pt").read_bytes() == before


def _weights(workdir, name):
    out = {}
    for fruit in FRUITS:
        for kind in ("generator", "discriminator"):
            out[(fruit, kind)] = torch.load(workdir / "models" / f"model_{name}" / f"{kind}_{fruit}.pt",
                                            weights_only=True)["state_dict"]
    return out


@pytest.mark.parametrize("milestones", ["1", "2"])   # 2: the run stops right after a milestone epoch
def test_interrupted_and_resumed_run_equals_uninterrupted(tiny_workdir, milestones):
    flags = ["--no-eval", "--seed", "3", "--milestones", milestones]
    assert train(tiny_workdir, *quick_flags("full", 4), *flags).returncode == 0
    r = train(tiny_workdir, *quick_flags("cut", 4), *flags, "--stop-after-epochs", "2")
    assert r.returncode == 0, r.stderr
    summary = load_json(tiny_workdir / "models/model_cut/info/training_summary_cut.json")
    assert summary["epochs_done"] == 2 and summary["status"] == "stopped"
    r = train(tiny_workdir, "--yes", "--model-name", "cut", "--resume", "--device", "cpu", "--no-eval")
    assert r.returncode == 0, r.stderr
    full, cut = _weights(tiny_workdir, "full"), _weights(tiny_workdir, "cut")
    for key in full:
        for name, tensor in full[key].items():
            assert torch.allclose(tensor.float(), cut[key][name].float(), atol=1e-6), (key, name)
    hist = load_json(tiny_workdir / "models/model_cut/info/training_history_apple.json")
    assert [e["epoch"] for e in hist["epochs"]] == [1, 2, 3, 4]
    assert hist["cost"]["epochs"] == 4   # the resumed part adds to what the first part cost


def test_resume_without_model_is_a_clear_error(tiny_workdir):
    r = train(tiny_workdir, "--yes", "--model-name", "nothing", "--resume")
    assert r.returncode == 2 and "no model 'nothing'" in r.stderr and "Traceback" not in r.stderr


@pytest.mark.parametrize("args, message", [
    (["--dataset-version", "nope"], "no dataset version 'nope'"),
    (["--fruits", "apple,kiwi"], "unknown fruit kiwi"),
    (["--model-name", "../evil"], "invalid model name"),
    (["--epochs", "zero"], "not a whole number"),
])
def test_bad_flags_give_one_line_errors(tiny_workdir, args, message):
    r = train(tiny_workdir, "--yes", *args)
    assert r.returncode == 2, r.stdout + r.stderr
    assert message in r.stderr and "Traceback" not in r.stderr
    assert not (tiny_workdir.parent / "evil").exists()


def test_missing_dataset_is_a_clear_error(tmp_path):
    r = train(tmp_path, "--yes")
    assert r.returncode == 2 and "no dataset" in r.stderr and "Traceback" not in r.stderr


def test_prompts_through_stdin_reask_bad_numbers(tiny_workdir):
    # version, model name, epochs (bad, then 1), batch (bad, then 8), lr, description, device
    answers = "\n".join([TINY_VERSION, "../x", "p1", "many", "1", "0", "8", "", "prompted run", "cpu"]) + "\n"
    r = train(tiny_workdir, "--no-eval", "--milestones", "1", input=answers)
    assert r.returncode == 0, r.stderr
    assert r.stdout.count("invalid answer") == 3
    cfg = load_json(tiny_workdir / "models/model_p1/info/training_config_p1.json")
    assert cfg["epochs"] == 1 and cfg["batch_size"] == 8 and cfg["description"] == "prompted run"
    assert cfg["lr"] == pytest.approx(0.0002)


def test_torchrun_shares_fruits_among_two_processes(tiny_workdir):
    import subprocess
    from conftest import ROOT

    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS="1")
    cmd = [sys.executable, "-m", "torch.distributed.run", "--nproc-per-node", "2", "--master-port", "29517",
           str(ROOT / "train_gan.py"), "--workdir", str(tiny_workdir), *quick_flags("dist", 2), "--no-eval"]
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=300, env=env, stdin=subprocess.DEVNULL)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    model = tiny_workdir / "models/model_dist"
    summary = load_json(model / "info/training_summary_dist.json")
    assert sorted(summary["per_fruit"]) == sorted(FRUITS) and summary["world_size"] == 2
    for fruit in FRUITS:
        assert (model / f"generator_{fruit}.pt").exists()
    # rank 0 trained apple and pear, rank 1 banana: each fruit trained exactly once
    assert (model / "checkpoints/latest_rank0of2.pt").exists() and (model / "checkpoints/latest_rank1of2.pt").exists()


def test_a_kill_mid_training_leaves_readable_files_and_resumes(tiny_workdir):
    """SIGKILL at an arbitrary moment after the first checkpoint: every file parses, --resume finishes."""
    import signal
    import subprocess
    import time

    from conftest import ROOT

    cmd = [sys.executable, str(ROOT / "train_gan.py"), "--workdir", str(tiny_workdir),
           *quick_flags("killed", 30), "--no-eval"]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, stdin=subprocess.DEVNULL)
    latest = tiny_workdir / "models/model_killed/checkpoints/latest.pt"
    deadline = time.time() + 120
    while not latest.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.3)                      # somewhere inside a later epoch or a write
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    model = tiny_workdir / "models/model_killed"
    for path in (model / "info").glob("*.json"):
        json.loads(path.read_text())     # no half-written JSON
    ckpt = torch.load(latest, weights_only=True)
    assert 1 <= ckpt["epoch"] < 30
    r = train(tiny_workdir, "--yes", "--model-name", "killed", "--resume", "--device", "cpu", "--no-eval")
    assert r.returncode == 0, r.stderr
    summary = load_json(model / "info/training_summary_killed.json")
    assert summary["status"] == "complete" and summary["epochs_done"] == 30
    hist = load_json(model / "info/training_history_apple.json")
    assert [e["epoch"] for e in hist["epochs"]] == list(range(1, 31))


def test_resume_extends_epochs_and_keeps_the_saved_settings(tiny_workdir):
    r = train(tiny_workdir, *quick_flags("ext", 1), "--no-eval", "--keep-checkpoint-every", "1")
    assert r.returncode == 0, r.stderr
    first_created = load_json(tiny_workdir / "models/model_ext/info/training_config_ext.json")["created"]
    r = train(tiny_workdir, "--yes", "--model-name", "ext", "--resume", "--lr", "0.001")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    assert "--lr cannot change when resuming model ext (saved 0.0002)" in r.stderr
    r = train(tiny_workdir, "--yes", "--model-name", "ext", "--resume", "--epochs", "2")
    assert r.returncode == 0, r.stderr
    model = tiny_workdir / "models/model_ext"
    cfg = load_json(model / "info/training_config_ext.json")
    assert cfg["epochs"] == 2                                            # extended, and recorded
    assert cfg["milestones"] == [1] and cfg["keep_checkpoint_every"] == 1   # not reset to the defaults
    assert cfg["evaluate"] is False and cfg["batch_size"] == 8 and cfg["eval_samples"] == 16
    assert (model / "checkpoints/epoch_0001.pt").exists()     # kept every epoch, as saved (the first run's last)
    assert not (model / "checkpoints/epoch_0002.pt").exists()  # the last epoch: only its network files hold it
    summary = load_json(model / "info/training_summary_ext.json")
    assert summary["status"] == "complete" and summary["epochs_done"] == 2
    # When the model was first trained survives the resume (the summary's "updated" says when it last ran).
    assert cfg["created"] == summary["created"] == first_created and summary["updated"] >= first_created


def test_resume_with_a_damaged_saved_config_is_one_line(tiny_run_copy):
    """A finished run t1 (a copy of conftest's tiny_run) whose saved settings were edited by hand."""
    path = tiny_run_copy / "models/model_t1/info/training_config_t1.json"
    assert '"batch_size": 8' in path.read_text()
    path.write_text(path.read_text().replace('"batch_size": 8', '"batch_size": "eight"'))
    r = train(tiny_run_copy, "--yes", "--model-name", "t1", "--resume")
    assert r.returncode == 2 and "Traceback" not in r.stderr and "batch_size 'eight'" in r.stderr
    assert r.stderr.strip().count("\n") == 0

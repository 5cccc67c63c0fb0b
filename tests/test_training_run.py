"""The run loop around the steps: reproducible device-side noise, the checkpoint cadence, SIGTERM, timing."""
import dataclasses
import json
import signal
import subprocess
import sys
import time

import pytest
import torch

from conftest import ROOT, TINY_VERSION
from gan_trainer import MultiFruitGANTrainer
from fruitgan.learn.config import TrainConfig, fruit_seed
from fruitgan.learn.run_control import Cadence, RunClock, StopRequest
from fruitgan.util.user_io import EXIT_INTERRUPTED


def _trainer(workdir, name, **kw):
    cfg = dict(dataset_version=TINY_VERSION, model_name=name, epochs=3, batch_size=8, device="cpu",
               evaluate=False, milestones=[1], seed=5)
    cfg.update(kw)
    return MultiFruitGANTrainer(TrainConfig(**cfg), workdir, log=lambda _m: None)


def _generator_weights(workdir, name, fruit):
    return torch.load(workdir / "models" / f"model_{name}" / f"generator_{fruit}.pt", weights_only=True)["state_dict"]


@pytest.mark.parametrize("precision", ["fp32", "bf16"])
def test_two_cpu_runs_with_the_same_seed_end_with_identical_weights(tiny_workdir, precision):
    for name in ("a", "b"):
        _trainer(tiny_workdir, name, precision=precision).train()
    for fruit in ("apple", "banana", "pear"):
        a, b = _generator_weights(tiny_workdir, "a", fruit), _generator_weights(tiny_workdir, "b", fruit)
        assert all(torch.equal(a[k], b[k]) for k in a), fruit


@pytest.mark.parametrize("has_bf16, asked, used", [(True, "auto", "bf16"), (False, "auto", "fp32"),
                                                   (True, "fp32", "fp32"), (False, "bf16", "bf16")])
def test_auto_precision_is_bf16_only_where_the_cpu_multiplies_bf16_and_is_saved_resolved(
        tiny_workdir, monkeypatch, has_bf16, asked, used):
    from fruitgan.learn import config as training_config
    monkeypatch.setattr(training_config, "cpu_has_bf16", lambda: has_bf16)
    trainer = _trainer(tiny_workdir, "p", precision=asked, epochs=1)
    assert trainer.cfg.precision == used
    trainer.train()
    assert all(model.precision == used for model in trainer.models)
    saved = json.loads((tiny_workdir / "models" / "model_p" / "info" / "training_config_p.json").read_text())
    assert (saved["precision"], saved["requested_precision"]) == (used, asked)
    # A resume keeps the arithmetic the run used, whatever this machine would pick for "auto".
    monkeypatch.setattr(training_config, "cpu_has_bf16", lambda: not has_bf16)
    again = dataclasses.replace(TrainConfig.from_saved(saved, "saved"), epochs=2)   # as train_gan.py --resume builds it
    resumed = MultiFruitGANTrainer(again, tiny_workdir, log=lambda _m: None, resume=True)
    assert resumed.cfg.precision == used
    resumed.train()
    saved = json.loads((tiny_workdir / "models" / "model_p" / "info" / "training_config_p.json").read_text())
    assert (saved["precision"], saved["requested_precision"]) == (used, asked)    # the request is not lost


@pytest.mark.parametrize("gpu_has_bf16", [True, False])
def test_auto_precision_on_a_gpu_follows_its_bf16_support(monkeypatch, gpu_has_bf16):
    from fruitgan.learn import config as training_config
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda *a, **k: gpu_has_bf16)
    monkeypatch.setattr(training_config, "cpu_has_bf16", lambda: not gpu_has_bf16)   # the CPU's answer must not leak in
    assert training_config.resolve_precision("auto", torch.device("cuda")) == ("bf16" if gpu_has_bf16 else "fp32")
    assert training_config.resolve_precision("fp32", torch.device("cuda")) == "fp32"


@pytest.mark.parametrize("has_bf16, precision, hinted", [(True, "fp32", True), (True, "bf16", False),
                                                         (False, "fp32", False)])
def test_a_cpu_with_bf16_arithmetic_gets_a_hint_to_use_it(tiny_workdir, monkeypatch, has_bf16, precision, hinted):
    from fruitgan.learn import config as training_config
    monkeypatch.setattr(training_config, "cpu_has_bf16", lambda: has_bf16)
    logs = []
    cfg = TrainConfig(dataset_version=TINY_VERSION, model_name="hint", epochs=1, batch_size=8, device="cpu",
                      evaluate=False, milestones=[1], precision=precision)
    MultiFruitGANTrainer(cfg, tiny_workdir, log=logs.append).train()
    assert any("--precision bf16 (or auto, the default) trains faster" in line for line in logs) == hinted


def test_each_fruit_s_batches_and_noise_are_its_own_seeded_streams(tiny_workdir):
    from fruitgan.util.pictures import unit_range
    from fruitgan.learn.batches import pass_seed

    trainer = _trainer(tiny_workdir, "n")
    group = trainer.groups[0]
    real, noise, random = next(trainer._batches(group, 1))
    for i, f in enumerate(group):
        s, ds = fruit_seed(5, f), trainer.datasets[f]
        order = torch.randperm(ds.train_index.numel(), generator=torch.Generator().manual_seed(pass_seed(s, 0)))
        assert torch.equal(real[i], unit_range(ds.pixels[ds.train_index[order[:8]]]))    # pass 0, its first batch
        gen = torch.Generator().manual_seed(s + 1)
        assert torch.equal(noise[i], torch.randn(8, 100, generator=gen))
        assert torch.equal(random["dropout"][i], torch.rand(3, 8, 7 * 32, generator=gen))  # then its dropout masks


def test_a_fruit_trains_alike_alone_and_with_fruits_of_other_sizes(tiny_dataset_dir, tmp_path):
    """Fruits of different sizes step together (an epoch is the same steps for every fruit), and each one
    trains exactly as it would alone with those steps per epoch."""
    import shutil

    from fruitgan.data import npz_format
    shutil.copytree(tiny_dataset_dir / "npzData", tmp_path / "npzData")
    # Make pear smaller: its first 6 images, real drawings (the tiny version holds 12 of its 40).
    path = npz_format.npz_path(tmp_path, "pear", TINY_VERSION)
    packed = npz_format.read_npz(path, "pear", TINY_VERSION)
    assert not packed.augmented[:6].any()
    npz_format.write_npz(path, npz_format.PackedFruit(packed.images[:6], packed.augmented[:6],
                                                      packed.source_index[:6], packed.metadata))
    together = _trainer(tmp_path, "mix", epochs=2, fruits=["apple", "pear"], steps_per_epoch=2, batch_size=4)
    assert len(together.groups) == 1 and together.streams["pear"].size == 6 != together.streams["apple"].size
    together.train()
    alone = _trainer(tmp_path, "solo", epochs=2, fruits=["pear"], steps_per_epoch=2, batch_size=4)
    alone.train()
    a, b = _generator_weights(tmp_path, "mix", "pear"), _generator_weights(tmp_path, "solo", "pear")
    assert all(torch.equal(a[k], b[k]) for k in a)
    hist = json.loads((tmp_path / "models/model_mix/info/training_history_pear.json").read_text())
    assert hist["steps_per_epoch"] == 2 and [e["epoch"] for e in hist["epochs"]] == [1, 2]


def test_steps_per_epoch_default_to_one_pass_over_the_largest_fruit():
    from fruitgan.learn.batches import steps_per_epoch

    assert steps_per_epoch(None, [700, 3000, 25], 64) == 47 and steps_per_epoch(5, [700], 64) == 5
    assert steps_per_epoch(None, [10], 64) == 1


def test_a_stream_walks_seeded_passes_whatever_the_batch_boundaries():
    from fruitgan.learn.batches import FruitStream

    pixels = torch.arange(10, dtype=torch.uint8).reshape(10, 1, 1).expand(10, 2, 2).contiguous()
    train = torch.tensor([0, 2, 3, 5, 7, 9])
    stream = FruitStream(pixels, train, seed=11, batch=4, device="cpu")
    seen = torch.cat([stream.indices(t) for t in range(6)])          # 24 draws = 4 passes over 6 images
    for k in range(4):
        assert sorted(seen[6 * k:6 * k + 6].tolist()) == train.tolist()   # each pass shows each image once
    again = FruitStream(pixels, train, seed=11, batch=4, device="cpu")
    assert torch.equal(again.indices(4), stream.indices(4))          # a resume at step 4 needs no saved order
    assert not torch.equal(FruitStream(pixels, train, seed=12, batch=4, device="cpu").indices(0), stream.indices(0))


def _checkpoint_epochs(trainer, monkeypatch):
    from fruitgan.models.checkpoint_files import CheckpointFiles

    written = []
    original = CheckpointFiles.save
    monkeypatch.setattr(CheckpointFiles, "save",
                        lambda files, ckpt, keep: (written.append(ckpt["epoch"]), original(files, ckpt, keep)))
    return written


def test_checkpoints_follow_the_cadence_milestones_and_the_end(tiny_workdir, monkeypatch):
    every_epoch = _trainer(tiny_workdir, "c0", epochs=4, milestones=[2], checkpoint_minutes=0.0)
    written = _checkpoint_epochs(every_epoch, monkeypatch)
    every_epoch.train()
    assert written == [1, 2, 3, 4]
    hourly = _trainer(tiny_workdir, "c60", epochs=4, milestones=[2], checkpoint_minutes=60.0)
    written = _checkpoint_epochs(hourly, monkeypatch)
    hourly.train()
    assert written == [2, 4]                       # the milestone and the end only
    ckpt = torch.load(tiny_workdir / "models/model_c60/checkpoints/latest.pt", weights_only=True)
    assert ckpt["epoch"] == 4 and [e["epoch"] for e in ckpt["history"]["apple"]["epochs"]] == [1, 2, 3, 4]


def test_summary_records_the_estimate_the_actual_time_and_where_it_went(tiny_workdir):
    trainer = _trainer(tiny_workdir, "s", epochs=2)
    trainer.train()
    info = tiny_workdir / "models/model_s/info"
    summary = json.loads((info / "training_summary_s.json").read_text())
    parts = summary["time"]
    assert set(parts) == {"steps", "checkpoints", "evaluation", "milestone_images", "history_writes", "other",
                          "total"}
    assert parts["steps"] > 0 and sum(v for k, v in parts.items() if k != "total") == pytest.approx(
        parts["total"], abs=0.01)
    est = summary["estimate"]
    assert est["seconds"] > 0 and est["actual_seconds"] > 0 and sorted(est["per_fruit"]) == ["apple", "banana", "pear"]
    for fruit in ("apple", "banana", "pear"):          # redrawn at the milestone and the end
        assert (info / f"training_history_{fruit}.png").stat().st_size > 0
    assert (info / "training_history_all.png").stat().st_size > 0


def test_the_estimate_counts_every_checkpoint_the_run_will_write(tiny_workdir, monkeypatch):
    trainer = _trainer(tiny_workdir, "e", epochs=10, milestones=[1], keep_checkpoint_every=4, checkpoint_minutes=600)
    trainer._build_models()                            # as train() does before it estimates
    monkeypatch.setattr(trainer.estimate, "_checkpoint_seconds", lambda: 1.0)
    assert trainer.estimate.run(1, 10)["parts"]["checkpoints"] == 4.0    # milestone 1, kept 4 and 8, the end
    assert trainer.estimate.run(5, 10)["parts"]["checkpoints"] == 2.0    # a resume at 5: kept 8, the end


def test_sigterm_finishes_the_epoch_writes_a_checkpoint_and_resume_completes(tiny_workdir):
    name, epochs = "sig", 400
    cmd = [sys.executable, str(ROOT / "train_gan.py"), "--workdir", str(tiny_workdir), "--yes",
           "--dataset-version", TINY_VERSION, "--model-name", name, "--epochs", str(epochs), "--batch-size", "8",
           "--milestones", "1", "--device", "cpu", "--no-eval", "--checkpoint-minutes", "600"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL, text=True)
    model = tiny_workdir / f"models/model_{name}"
    latest = model / "checkpoints/latest.pt"
    deadline = time.time() + 240
    while not latest.exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.05)
    time.sleep(0.5)                                    # inside a later epoch (no cadence checkpoint for 10 hours)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=240)
    assert proc.returncode == EXIT_INTERRUPTED, err[-2000:]
    ckpt = torch.load(latest, weights_only=True)
    assert 1 < ckpt["epoch"] < epochs                  # written because of the signal, not at milestone 1
    assert f"stopped at epoch {ckpt['epoch']} of {epochs}; checkpoint saved; continue with: " \
           f"python train_gan.py --resume --model-name {name}" in err
    summary = json.loads((model / f"info/training_summary_{name}.json").read_text())
    assert summary["status"] == "interrupted" and summary["epochs_done"] == ckpt["epoch"]
    hist = json.loads((model / "info/training_history_apple.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == list(range(1, ckpt["epoch"] + 1))   # consistent with it
    import train_gan                                   # the resume through the script's main, in this process
    from fruitgan.util.user_io import run_main
    code = run_main(train_gan.main, ["--workdir", str(tiny_workdir), "--yes", "--model-name", name, "--resume",
                                     "--epochs", str(epochs), "--stop-after-epochs", "3"])
    assert code == 0
    hist = json.loads((model / "info/training_history_apple.json").read_text())
    assert [e["epoch"] for e in hist["epochs"]] == list(range(1, ckpt["epoch"] + 4))


def test_run_clock_splits_the_time_and_calls_the_rest_other():
    now = [0.0]
    clock = RunClock(lambda: now[0])
    with clock.part("steps"):
        now[0] += 3.0
    with clock.part("checkpoints"):
        now[0] += 1.0
    now[0] += 0.5
    parts = clock.breakdown()
    assert parts["steps"] == 3.0 and parts["checkpoints"] == 1.0 and parts["other"] == 0.5 and parts["total"] == 4.5
    with pytest.raises(ValueError):
        with clock.part("other"):
            pass


def test_cadence_is_due_after_its_minutes_and_zero_is_always_due():
    now = [0.0]
    cadence = Cadence(2.0, lambda: now[0])
    now[0] = 119.0
    assert not cadence.due()
    now[0] = 120.0
    assert cadence.due()
    cadence.mark()
    assert not cadence.due()
    assert Cadence(0.0, lambda: now[0]).due()


def test_stop_request_handles_sigterm_only_while_active():
    before = signal.getsignal(signal.SIGTERM)
    with StopRequest(lambda name: f"{name} seen") as stop:
        signal.raise_signal(signal.SIGTERM)
        assert stop.requested == "SIGTERM"
        with pytest.raises(KeyboardInterrupt):         # a second one stops at once
            signal.raise_signal(signal.SIGTERM)
    assert signal.getsignal(signal.SIGTERM) is before


def test_the_estimate_times_a_plot_with_the_run_s_rows_and_figures(tiny_workdir, monkeypatch):
    # A plot with quality panels takes several times as long as the empty one a new run starts with.
    from fruitgan.learn import plots as training_plots
    trainer = _trainer(tiny_workdir, "p", epochs=10, milestones=[1, 5])
    trainer._build_models()
    figures = {"fid": 3.0, "recognizability": 0.5, "coverage": 0.9}
    monkeypatch.setattr(trainer.estimate, "_milestone_seconds", lambda gi: {
        "milestone_images": 0.0, "evaluation": {}, "final": {},
        "figures": {f: dict(figures) for f in trainer.groups[gi]}})
    drawn = []
    monkeypatch.setattr(training_plots, "plot_fruit_history", lambda history, path: drawn.append(history) or path)
    trainer.estimate.run(1, 10)
    timed = drawn[-1]                                  # the first draw only pays matplotlib's import
    assert [r["epoch"] for r in timed["epochs"]] == list(range(1, 11))
    assert [q["epoch"] for q in timed["quality"]] == [1, 5, 10] and timed["quality"][0]["fid"] == 3.0


@pytest.mark.parametrize("seconds, epochs, timed", [(0.0, 10**9, 2), (1e9, 10**9, 30), (1e9, 1, 2)])
def test_the_step_probe_times_2_to_30_steps_and_little_of_a_short_run(tiny_workdir, monkeypatch, seconds, epochs,
                                                                        timed):
    from fruitgan.learn import estimate as run_estimate
    trainer = _trainer(tiny_workdir, "q")
    trainer._build_models()
    monkeypatch.setattr(run_estimate, "ETA_PROBE_SECONDS", seconds)
    calls = []
    step = type(trainer.models[0]).train_step
    monkeypatch.setattr(type(trainer.models[0]), "train_step", lambda self, *a: calls.append(1) or step(self, *a))
    assert trainer.estimate.epoch_seconds(0, epochs) > 0
    assert len(calls) == 1 + timed                     # one warm-up step, not timed


def test_description_says_the_device_and_arithmetic_the_run_resolved(tiny_workdir):
    from fruitgan.learn.config import resolve_precision

    trainer = _trainer(tiny_workdir, "desc", epochs=1, device="auto", precision="auto")
    trainer.train()
    lines = (tiny_workdir / "models/model_desc/info/description.txt").read_text().splitlines()
    used = resolve_precision("auto", torch.device("cpu"))
    assert "Device: cpu" in lines and f"Precision: {used}" in lines          # what it trained on ...
    assert "Requested device: auto" in lines and "Requested precision: auto" in lines   # ... and what was asked

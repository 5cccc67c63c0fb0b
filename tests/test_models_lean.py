"""Lean model folders (issue 29 items 2 and 5) and the rules of writing one (issue 28): kept epochs hold only
what drawing needs, a run's folder size is predicted from its networks and checked against the disk before
training, whether a folder may be written is decided in one place, and a resume's settings are read once."""
import json
import multiprocessing
import shutil

import pytest
import torch

from conftest import TINY_VERSION, run_script
from fruitgan.models import checkpoint_files, loading, sizes
from fruitgan.models.folder import ModelFolder
from fruitgan.models.may_write import check_may_write
from fruitgan.util.run_lock import RunLock
from fruitgan.util.user_io import UserError
from gan_model import GANConfig

PART_TOLERANCE = 0.02        # the .pt parts follow from the parameter counts
TOTAL_TOLERANCE = 0.10       # images and records are bounded from above, not predicted exactly


def _train(workdir, name, *extra):
    return run_script("train_gan.py", "--workdir", str(workdir), "--yes", "--dataset-version", TINY_VERSION,
                      "--model-name", name, "--epochs", "2", "--batch-size", "8", "--milestones", "1",
                      "--device", "cpu", "--no-eval", "--keep-checkpoint-every", "1", *extra)


@pytest.fixture(scope="module")
def lean_run(tiny_dataset_dir, tmp_path_factory):
    """(work folder, CompletedProcess): one finished _train run 'lean', trained once for this module's tests,
    each of which works on its own copy (lean_copy)."""
    base = tmp_path_factory.mktemp("lean")
    shutil.copytree(tiny_dataset_dir / "npzData", base / "npzData")
    r = _train(base, "lean")
    assert r.returncode == 0, r.stderr
    return base, r


@pytest.fixture
def lean_copy(lean_run, tmp_path):
    shutil.copytree(lean_run[0], tmp_path / "w")
    return tmp_path / "w"


def test_a_tiny_runs_folder_is_what_was_predicted_and_its_end_says_so(lean_run, lean_copy, capsys):
    import generate_images
    from fruitgan.util.user_io import run_main

    tiny_workdir, r = lean_copy, lean_run[1]
    folder = ModelFolder.in_workdir(tiny_workdir, "lean")
    kept = sizes.kept_bytes(folder)
    config = json.loads(folder.config_path().read_text())
    grid_side = 8 * (28 + 2) + 2                           # gan_trainer's 8 x 8 grid, 2 px apart
    predicted = sizes.predicted_bytes(GANConfig.from_dict(config["gan_config"]), 3, 2, 1, 2, False,
                                      grid_side ** 2)
    for part in ("resume state", "kept epochs", "networks"):
        assert kept[part] == pytest.approx(predicted[part], rel=PART_TOLERANCE), part
    assert kept["best"] == predicted["best"] == 0
    assert sum(kept.values()) == pytest.approx(sum(predicted.values()), rel=TOTAL_TOLERANCE)
    # Kept epochs hold one generator per fruit; latest.pt the full resume state (four of them and more). The
    # last epoch keeps no file of its own: its generator files hold it.
    assert sorted(folder.kept_checkpoints()) == [1] and folder.saved_epochs() == [1, 2]
    assert 4 * kept["kept epochs"] < kept["resume state"]
    trained = ModelFolder.in_workdir(lean_run[0], "lean")                  # where the run wrote it
    assert f"kept {sizes.mb(sum(kept.values()))} in {trained.path}" in r.stdout
    # Storage is priced on the folder as it is kept (the report and description are written after it).
    report = folder.read_cost_report()
    assert report["breakdown"]["storage"]["size_bytes"] == pytest.approx(sum(kept.values()), rel=0.01)
    # --checkpoint N draws from a kept epoch end to end (generate_images.py's main, in process: the drawing is
    # under test, not a fresh start of torch); the last epoch draws what its generator file draws.
    drawn = {}
    for checkpoint in ("1", "2", "milestone"):
        out = tiny_workdir / f"drawn_{checkpoint}.png"
        code = run_main(generate_images.main, ["lean", "pear", "--workdir", str(tiny_workdir), "--checkpoint",
                                               checkpoint, "--num-images", "4", "--seed", "0", "--save", str(out)])
        assert code == 0, capsys.readouterr().err
        drawn[checkpoint] = out.read_bytes()
    assert drawn["2"] == drawn["milestone"] != drawn["1"]


def test_a_resume_past_the_last_epoch_keeps_its_epoch_file_first(lean_copy):
    tiny_workdir = lean_copy                       # a finished _train run of 2 epochs, as this test once trained
    folder = ModelFolder.in_workdir(tiny_workdir, "lean")
    before = loading.load_generator(tiny_workdir, "lean", "pear", 2)[0].state_dict()
    assert 2 not in folder.kept_checkpoints()
    r = run_script("train_gan.py", "--workdir", str(tiny_workdir), "--yes", "--model-name", "lean", "--resume",
                   "--epochs", "3")
    assert r.returncode == 0, r.stderr
    assert sorted(folder.kept_checkpoints()) == [1, 2] and folder.saved_epochs() == [1, 2, 3]
    after = loading.load_generator(tiny_workdir, "lean", "pear", 2)
    assert after[1]["path"].endswith("epoch_0002.pt")
    assert all(torch.equal(before[k], v) for k, v in after[0].state_dict().items())


def test_a_run_that_would_not_fit_on_the_disk_is_refused_before_training(tiny_workdir, monkeypatch):
    from gan_trainer import MultiFruitGANTrainer
    from fruitgan.learn.config import TrainConfig

    cfg = TrainConfig(dataset_version=TINY_VERSION, model_name="big", epochs=400, batch_size=8, device="cpu",
                      evaluate=False, keep_checkpoint_every=1)
    trainer = MultiFruitGANTrainer(cfg, tiny_workdir, log=lambda _m: None)
    needed = sum(trainer.predicted_bytes().values()) + trainer.predicted_bytes()["resume state"]
    usage = type("usage", (), {"free": needed - 1})
    monkeypatch.setattr(sizes.shutil, "disk_usage", lambda _path: usage)
    with pytest.raises(UserError) as exc:
        trainer.train()
    message = str(exc.value)
    assert f"needs {sizes.mb(needed)} ({needed:,} bytes)" in message and f"({needed - 1:,} bytes) free" in message
    assert "--keep-checkpoint-every (now 1; 0 keeps none)" in message and "\n" not in message
    assert not trainer.store.path.exists()                  # refused before anything was written
    usage.free = needed
    sizes.check_room(trainer.store, trainer.predicted_bytes(), 1)   # just enough: allowed


def test_default_runs_keep_what_issue_29_allows():
    """Predicted from the parameter counts (no big run measured): 7 fruits at 64 px and the quickstart at
    28 px (run_pipeline.py: 100 epochs, milestones to 100), 400 epochs of apple at 28 px."""
    from fruitgan.learn.config import milestone_epochs
    from fruitgan.util import settings

    keep = settings.KEEP_CHECKPOINT_EVERY.default
    for (resolution, fruits, epochs), most in {(64, 7, 400): 10 ** 9, (28, 1, 400): 50 * sizes.BYTES_PER_MB,
                                               (28, 7, 100): 200 * sizes.BYTES_PER_MB}.items():
        side = 8 * (resolution + 2) + 2
        milestones = len(milestone_epochs(settings.DEFAULT_MILESTONES, epochs))
        parts = sizes.predicted_bytes(GANConfig(resolution=resolution), fruits, epochs, keep, milestones, True,
                                      side ** 2)
        assert sum(parts.values()) <= most, (resolution, fruits, epochs)
        # No kept epoch duplicates the networks: the last epoch (a kept one) has no epoch file.
        assert parts["kept epochs"] == (epochs // keep - 1) * parts["best"]


def _hold(path, taken, release):
    with RunLock(path, "model held"):
        taken.set()
        release.wait(60)


def test_one_rule_decides_whether_a_model_folder_may_be_written(tmp_path):
    folder = ModelFolder.in_workdir(tmp_path, "m")
    check_may_write(folder)                                     # a new name
    with pytest.raises(UserError, match="no model 'm' to resume"):
        check_may_write(folder, resume=True)
    folder.info_dir.mkdir(parents=True)
    with pytest.raises(UserError, match="model 'm' has no saved settings .*--overwrite"):
        check_may_write(folder, resume=True)
    folder.write_config({"model_name": "m"})
    with pytest.raises(UserError, match="model 'm' already exists .*--resume.*--overwrite"):
        check_may_write(folder)
    check_may_write(folder, overwrite=True)
    check_may_write(folder, resume=True)
    fork = multiprocessing.get_context("fork")
    taken, release = fork.Event(), fork.Event()
    holder = fork.Process(target=_hold, args=(folder.path, taken, release))
    holder.start()
    try:
        assert taken.wait(60)
        for kw in ({}, {"overwrite": True}, {"resume": True}):
            with pytest.raises(UserError, match=f"model m is being written by PID {holder.pid}"):
                check_may_write(folder, **kw)
    finally:
        release.set()
        holder.join(60)
    check_may_write(folder, resume=True)


def test_a_resume_reads_its_saved_settings_once(tiny_workdir, monkeypatch):
    import gan_trainer
    import train_gan

    assert _train(tiny_workdir, "once", "--stop-after-epochs", "1").returncode == 0
    reads = []
    original = ModelFolder.read_config
    monkeypatch.setattr(ModelFolder, "read_config", lambda self: reads.append(self.name) or original(self))
    monkeypatch.setattr(gan_trainer.MultiFruitGANTrainer, "train", lambda self: None)
    assert train_gan.main(["--workdir", str(tiny_workdir), "--yes", "--model-name", "once", "--resume"]) == 0
    assert reads == ["once"]


def test_kept_checkpoints_are_written_by_one_writer_one_at_a_time(tmp_path):
    import threading
    import time

    files = checkpoint_files.CheckpointFiles(ModelFolder.in_workdir(tmp_path, "w"))
    running, overlaps, order = [0], [], []
    lock = threading.Lock()

    def write(i):
        def run():
            with lock:
                running[0] += 1
                overlaps.append(running[0])
            time.sleep(0.05)
            order.append(i)
            with lock:
                running[0] -= 1
        return run

    for i in range(3):
        files.submit(write(i))
    files.wait()
    assert order == [0, 1, 2] and max(overlaps) == 1

    def fail():
        raise OSError("disk full")

    files.submit(fail)
    with pytest.raises(OSError, match="disk full"):
        files.wait()
    files.wait()                                      # reported once

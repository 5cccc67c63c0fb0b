"""The held-out split: chosen once per dataset version, recorded in metadata.json and the NPZ, never leaking
into training (by source index or by pixels), and figures that need it say "not enough real drawings" without it.

Data: the bundled sample (1000 apple bitmaps, 40 usable pear stroke drawings), converted by the project's code.
"""
import json

import numpy as np
import pytest
import torch

import data_loader
import gan_evaluation as ge
import imageToNPZ
import quickdraw_formats as qf
import rawDataToImage as r2i
import settings as st
from gan_trainer import MultiFruitGANTrainer, TrainConfig

RES = 28
APPLE_COUNT = 1100      # 1000 real apple bitmaps + 100 augmented copies


@pytest.fixture(scope="module")
def split_workdir(tmp_path_factory):
    import shutil
    from conftest import SAMPLE

    base = tmp_path_factory.mktemp("split")
    shutil.copytree(SAMPLE, base / "rawData" / "sample")
    summary = r2i.convert(dict(workdir=base, fruits=["apple", "pear"], resolution=RES, count=APPLE_COUNT,
                               version="s", augment=True, workers=1, progress=False))
    assert imageToNPZ.main(["--workdir", str(base), "--yes", "--version", "s"]) == 0
    return base, summary


def test_split_threshold_is_what_the_two_sample_test_needs():
    assert st.SPLIT_MIN_HELDOUT == 2 * ge.MIN_TWO_SAMPLE_PER_HALF
    assert r2i.heldout_size(1000) == 200 and r2i.heldout_size(4000) == 800     # 20%, at least 200
    assert r2i.heldout_size(300) == 150                                         # never more than half
    assert r2i.heldout_size(159) == 0 and r2i.heldout_size(160) == 80           # too few: no split


def test_28px_takes_the_bitmaps_and_says_so(split_workdir):
    base, summary = split_workdir
    apple = summary["fruits"]["apple"]
    assert apple["formats"] == ["bitmap"] and apple["real_count"] == 1000
    assert apple["source_choice"].startswith("bitmaps: 1000 drawings")
    meta = json.loads((base / "imageData" / "apple" / "versions" / "metadata.json").read_text())
    assert meta["source_choice"] == apple["source_choice"] and meta["heldout"]["count"] == 200
    assert "bitmaps: 1000 drawings" in r2i.format_summary(summary)
    scan = qf.scan_raw_data(base / "rawData")
    at_32, why = r2i.choose_files(scan.files_for("apple"), qf.AUTO, 32)       # other sizes: strokes as before
    assert {f.format for f in at_32} <= set(qf.STROKE_FORMATS) and why == "formats auto"


def test_split_is_deterministic_per_fruit():
    a = r2i.choose_heldout(1000, "apple")
    assert np.array_equal(a, r2i.choose_heldout(1000, "apple")) and len(a) == 200
    assert not np.array_equal(a, r2i.choose_heldout(1000, "banana"))


def test_split_never_leaks_into_training(split_workdir):
    base, _ = split_workdir
    ds = data_loader.load_version(base, "s", ["apple"])["apple"]
    assert ds.has_split and ds.heldout_images.shape[0] == 200 and ds.split_note is None
    train = ~ds.heldout
    held_sources = set(torch.nonzero(ds.heldout & ~ds.augmented).reshape(-1).tolist())
    # by source index: no training image (real or augmented) comes from a held-out drawing
    assert not (set(ds.source_index[train].tolist()) & held_sources)
    assert int(ds.augmented.sum()) == APPLE_COUNT - 1000 and not ds.heldout[ds.augmented].any()
    # by pixels: no held-out drawing appears among the training images
    train_px = {bytes(x) for x in (ds.train_images.add(1).mul(127.5).round().to(torch.uint8).numpy())}
    held_px = [bytes(x) for x in (ds.heldout_images.add(1).mul(127.5).round().to(torch.uint8).numpy())]
    assert not any(p in train_px for p in held_px)
    assert ds.train_images.shape[0] == APPLE_COUNT - 200


def test_too_few_real_drawings_get_no_split_and_say_so(split_workdir):
    base, summary = split_workdir
    pear = summary["fruits"]["pear"]
    assert pear["heldout_count"] == 0 and pear["heldout_note"].startswith("not enough real drawings")
    ds = data_loader.load_version(base, "s", ["pear"])["pear"]
    assert not ds.has_split and ds.split_note.startswith("not enough real drawings")
    assert ds.train_images.shape[0] == len(ds)


def test_old_npz_without_split_reads_as_no_split(split_workdir, tmp_path):
    import npz_format

    base, _ = split_workdir
    packed = npz_format.read_npz(npz_format.npz_path(base, "apple", "s"), "apple", "s")
    assert packed.heldout is not None and packed.heldout.sum() == 200
    packed.heldout = None
    npz_format.write_npz(npz_format.npz_path(tmp_path, "apple", "old"), packed)
    ds = data_loader.load_fruit(tmp_path, "old", "apple")
    assert not ds.has_split and "not enough real drawings" in ds.split_note


def test_npz_refuses_a_leaking_split(split_workdir, tmp_path):
    import npz_format
    from user_io import UserError

    base, _ = split_workdir
    packed = npz_format.read_npz(npz_format.npz_path(base, "apple", "s"), "apple", "s")
    aug = np.nonzero(packed.augmented)[0][0]
    packed.heldout[packed.source_index[aug]] = True
    packed.heldout[aug] = False                     # a copy of a held-out drawing marked for training
    path = npz_format.npz_path(tmp_path, "apple", "bad")
    npz_format.write_npz(path, packed)
    with pytest.raises(UserError, match="split leaks"):
        npz_format.read_npz(path, "apple", "bad")


def test_trainer_history_carries_the_heldout_figures(split_workdir, tmp_path):
    import shutil

    base, _ = split_workdir
    shutil.copytree(base / "npzData", tmp_path / "npzData")
    shutil.copytree(base / "rawData", tmp_path / "rawData")
    logs = []
    cfg = TrainConfig(dataset_version="s", model_name="q", epochs=1, batch_size=128, device="cpu",
                      milestones=[1], eval_samples=96, fruits=["apple", "pear"], schedule="sequential")
    trainer = MultiFruitGANTrainer(cfg, tmp_path, log=logs.append)
    assert trainer.data["apple"].shape[0] == APPLE_COUNT - 200        # trains on the training part only
    trainer.train()
    apple = json.loads((tmp_path / "models" / "model_q" / "info" / "training_history_apple.json").read_text())
    q = apple["quality"][-1]
    assert 0.0 <= q["two_sample_accuracy"] <= 1.0 and q["memorisation_ratio"] > 0
    assert 0.0 <= q["recognizability"] <= 1.0 and "recognizability_note" not in q
    pear = json.loads((tmp_path / "models" / "model_q" / "info" / "training_history_pear.json").read_text())
    p = pear["quality"][-1]
    assert p["two_sample_accuracy"] is None and p["two_sample_note"].startswith("not enough real drawings")
    assert p["memorisation_ratio"] is None and p["memorisation_note"].startswith("not enough real drawings")
    # No split for pear: its reference gives the recogniser's own held-out accuracy, pooled over the fruits.
    ref = pear["reference_quality"]
    assert ref["heldout_recognizability"] is None and ref["recognizability_note"].startswith("not enough real")
    assert ref["recognizer_heldout_accuracy"] == trainer.recognizer_info["heldout_accuracy"]
    assert ref["recognizer_heldout_count"] == sum(trainer.recognizer_info["heldout_counts"].values()) > 0
    assert "recognizer_heldout_accuracy" not in apple["reference_quality"]       # apple has its own figure
    assert 0.0 <= apple["reference_quality"]["heldout_recognizability"] <= 1.0
    assert any("held-out tests: not enough real drawings" in line for line in logs), logs   # said once for both
    assert any("2-sample accuracy 0." in line or "2-sample accuracy 1." in line for line in logs)


def test_one_fruit_dataset_gets_no_one_class_recognisability(split_workdir, tmp_path):
    """rawData/ with apples only: no all-fruit recogniser, and the one-fruit dataset classifier is refused."""
    import shutil

    base, _ = split_workdir
    shutil.copytree(base / "npzData", tmp_path / "npzData")
    for path in (base / "rawData" / "sample").rglob("apple*"):
        target = tmp_path / path.relative_to(base)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(path, target)
    cfg = TrainConfig(dataset_version="s", model_name="one", epochs=1, batch_size=256, device="cpu",
                      milestones=[1], eval_samples=16, fruits=["apple"])
    MultiFruitGANTrainer(cfg, tmp_path, log=lambda _: None).train()
    hist = json.loads((tmp_path / "models" / "model_one" / "info" / "training_history_apple.json").read_text())
    q = hist["quality"][-1]
    assert "recognizability" not in q and q["recognizability_note"].startswith("not enough fruits")

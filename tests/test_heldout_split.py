"""The held-out split: chosen once per dataset version, recorded in metadata.json and the NPZ, never leaking
into training (by source index or by pixels), and figures that need it say "not enough real drawings" without it.

Data: the bundled sample (1000 apple bitmaps, 40 usable pear stroke drawings), converted by the project's code.
"""
import json

import numpy as np
import pytest
import torch

import data_loader
from fruitgan.metrics import two_sample as ts
from fruitgan.data import heldout_split as hs
from fruitgan.data import image_conversion as ic
from fruitgan.data import npz_packing
from fruitgan.data import quickdraw_formats as qf
from fruitgan.util import settings as st
from gan_trainer import MultiFruitGANTrainer
from fruitgan.learn.config import TrainConfig

RES = 28
APPLE_COUNT = 1100      # 1000 real apple bitmaps + 100 augmented copies


@pytest.fixture(scope="module")
def split_workdir(tmp_path_factory):
    import shutil
    from conftest import SAMPLE

    base = tmp_path_factory.mktemp("split")
    shutil.copytree(SAMPLE, base / "rawData" / "sample")
    summary = ic.convert(dict(workdir=base, fruits=["apple", "pear"], resolution=RES, count=APPLE_COUNT,
                               version="s", augment=True, workers=1, progress=False))
    npz_packing.pack(base, "s", progress=False, log=lambda _: None)
    return base, summary


def test_split_sizes_hold_out_a_quarter_and_keep_the_test_part_callable():
    assert hs.heldout_size(1000) == 300 and hs.heldout_size(4000) == 1000     # 25%, at least 300
    assert hs.heldout_size(300) == 150                                         # never more than half
    assert hs.heldout_size(159) == 0 and hs.heldout_size(160) == 80            # too few: no split
    assert hs.validation_size(300) == 100 and hs.validation_size(1000) == 333  # a third validates
    # The smallest split's test part still gives a two-sample interval within +-0.1 (a figure that can be called).
    smallest = st.SPLIT_MIN_HELDOUT - hs.validation_size(st.SPLIT_MIN_HELDOUT)
    low, high = ts.wilson_interval(smallest, 2 * smallest)
    assert (high - low) / 2 <= ts.TWO_SAMPLE_MAX_HALF_WIDTH
    assert smallest >= ts.MIN_TWO_SAMPLE_REAL


def test_28px_takes_the_bitmaps_and_says_so(split_workdir):
    base, summary = split_workdir
    apple = summary["fruits"]["apple"]
    assert apple["formats"] == ["bitmap"] and apple["real_count"] == 1000
    assert apple["source_choice"].startswith("bitmaps: 1000 drawings")
    meta = json.loads((base / "imageData" / "apple" / "versions" / "metadata.json").read_text())
    assert meta["source_choice"] == apple["source_choice"] and meta["heldout"]["count"] == 300
    assert "bitmaps: 1000 drawings" in ic.format_summary(summary)
    scan = qf.scan_raw_data(base / "rawData")
    at_32, why = ic.choose_files(scan.files_for("apple"), qf.AUTO, 32)       # other sizes: strokes as before
    assert {f.format for f in at_32} <= set(qf.STROKE_FORMATS) and why == "formats auto"


def test_split_is_deterministic_per_fruit():
    a = hs.choose_heldout(1000, "apple")
    assert np.array_equal(a, hs.choose_heldout(1000, "apple")) and len(a) == 300
    assert not np.array_equal(a, hs.choose_heldout(1000, "banana"))
    v = hs.validation_mask(300, "apple")
    assert np.array_equal(v, hs.validation_mask(300, "apple")) and v.sum() == 100
    assert not np.array_equal(v, hs.validation_mask(300, "banana"))


def test_split_never_leaks_into_training(split_workdir):
    base, _ = split_workdir
    ds = data_loader.load_version(base, "s", ["apple"])["apple"]
    assert ds.has_split and ds.heldout_images.shape[0] == 300 and ds.split_note is None
    train = ~ds.heldout
    held_sources = set(ds.heldout_index.tolist())
    # by source index: no training image (real or augmented) comes from a held-out drawing
    assert not (set(ds.source_index[train].tolist()) & held_sources)
    assert int(ds.augmented.sum()) == APPLE_COUNT - 1000 and not ds.heldout[ds.augmented].any()
    # by pixels: no held-out drawing appears among the training images
    train_px = {bytes(x) for x in ds.pixels[ds.train_index].numpy()}
    assert not any(bytes(x) in train_px for x in ds.pixels[ds.heldout_index].numpy())
    assert ds.train_index.numel() == APPLE_COUNT - 300


def test_validation_and_test_parts_divide_the_heldout_drawings(split_workdir):
    base, _ = split_workdir
    ds = data_loader.load_version(base, "s", ["apple"])["apple"]
    val, test = set(ds.validation_index.tolist()), set(ds.test_index.tolist())
    assert len(val) == 100 and len(test) == 200 and not val & test          # disjoint ...
    assert val | test == set(ds.heldout_index.tolist())                     # ... and together the held-out part
    assert not ds.augmented[ds.validation_index].any() and not ds.augmented[ds.test_index].any()


def test_too_few_real_drawings_get_no_split_and_say_so(split_workdir):
    base, summary = split_workdir
    pear = summary["fruits"]["pear"]
    assert pear["heldout_count"] == 0 and pear["heldout_note"].startswith("not enough real drawings")
    ds = data_loader.load_version(base, "s", ["pear"])["pear"]
    assert not ds.has_split and ds.split_note.startswith("not enough real drawings")
    assert ds.train_index.numel() == len(ds) and ds.validation_index.numel() == ds.test_index.numel() == 0


def test_old_npz_without_split_reads_as_no_split(split_workdir, tmp_path):
    from fruitgan.data import npz_format
    base, _ = split_workdir
    packed = npz_format.read_npz(npz_format.npz_path(base, "apple", "s"), "apple", "s")
    assert packed.heldout is not None and packed.heldout.sum() == 300
    packed.heldout = None
    npz_format.write_npz(npz_format.npz_path(tmp_path, "apple", "old"), packed)
    ds = data_loader.load_fruit(tmp_path, "old", "apple")
    assert not ds.has_split and "not enough real drawings" in ds.split_note


def test_npz_refuses_a_leaking_split(split_workdir, tmp_path):
    from fruitgan.data import npz_format
    from fruitgan.util.user_io import UserError

    base, _ = split_workdir
    packed = npz_format.read_npz(npz_format.npz_path(base, "apple", "s"), "apple", "s")
    aug = np.nonzero(packed.augmented)[0][0]
    packed.heldout[packed.source_index[aug]] = True
    packed.heldout[aug] = False                     # a copy of a held-out drawing marked for training
    path = npz_format.npz_path(tmp_path, "apple", "bad")
    npz_format.write_npz(path, packed)
    with pytest.raises(UserError, match="split leaks"):
        npz_format.read_npz(path, "apple", "bad")


@pytest.fixture
def quick_two_sample(monkeypatch):
    """A short two-sample test: these tests check what is recorded where, not the test's power
    (tests/test_quality_tests.py measures that with the real settings)."""
    monkeypatch.setattr(ts, "TWO_SAMPLE_MIN_STEPS", 20)
    monkeypatch.setattr(ts, "TWO_SAMPLE_MAX_STEPS", 20)


def test_trainer_history_carries_the_heldout_figures(split_workdir, tmp_path, quick_two_sample, monkeypatch):
    import shutil

    base, _ = split_workdir
    passes, full_test = [], ts.two_sample_test          # the cheap check at milestones, the full test at the end
    monkeypatch.setattr(ts, "two_sample_test", lambda *a, **k: passes.append(k["epochs"]) or full_test(*a, **k))
    monkeypatch.setattr(ts, "CHECK", ts.CHECK._replace(max_real=60))
    shutil.copytree(base / "npzData", tmp_path / "npzData")
    shutil.copytree(base / "rawData", tmp_path / "rawData")
    logs = []
    cfg = TrainConfig(dataset_version="s", model_name="q", epochs=1, batch_size=128, device="cpu",
                      milestones=[1], eval_samples=96, fruits=["apple", "pear"], schedule="sequential")
    trainer = MultiFruitGANTrainer(cfg, tmp_path, log=logs.append)
    assert trainer.streams["apple"].size == APPLE_COUNT - 300        # trains on the training part only
    summary = trainer.train()
    apple = json.loads((tmp_path / "models" / "model_q" / "info" / "training_history_apple.json").read_text())
    q = apple["quality"][-1]
    # At milestones: the validation part only (it picks the best checkpoint) ...
    assert 0.0 <= q["val_two_sample_accuracy"] <= 1.0 and q["val_memorisation_ratio"] > 0
    assert q["val_two_sample_real"] == 60 and q["val_two_sample_low"] <= q["val_two_sample_accuracy"]
    assert "two_sample_accuracy" not in q
    assert 0.0 <= q["recognizability"] <= 1.0 and "recognizability_note" not in q
    # ... and at the end the best checkpoint on the test part: the reported figure, with its interval.
    t = apple["test_quality"]
    assert t["epoch"] == apple["best_epoch"] == 1 and t["part"] == "test" and t["two_sample_real"] == 200
    assert t["two_sample_low"] <= t["two_sample_accuracy"] <= t["two_sample_high"] and t["memorisation_ratio"] > 0
    assert summary["apple"]["test_quality"] == t
    # apple: the estimate's probe and the one milestone check cheaply, then the test part once, in full
    assert passes == [ts.CHECK.epochs, ts.CHECK.epochs, ts.FULL.epochs]
    pear = json.loads((tmp_path / "models" / "model_q" / "info" / "training_history_pear.json").read_text())
    p = pear["quality"][-1]
    assert p["val_two_sample_accuracy"] is None and p["val_two_sample_note"].startswith("not enough real drawings")
    assert p["val_memorisation_ratio"] is None and pear["test_quality"] is None
    # No split for pear: its reference gives the recogniser's own held-out accuracy, pooled over the fruits.
    ref = pear["reference_quality"]
    info = trainer.quality.recognizer_info
    assert ref["heldout_recognizability"] is None and ref["recognizability_note"].startswith("not enough real")
    assert ref["recognizer_heldout_accuracy"] == info["heldout_accuracy"]
    assert ref["recognizer_heldout_count"] == sum(info["heldout_counts"].values()) > 0
    assert "recognizer_heldout_accuracy" not in apple["reference_quality"]       # apple has its own figure
    assert 0.0 <= apple["reference_quality"]["heldout_recognizability"] <= 1.0
    # One console line per fruit per milestone, figures and all.
    lines = [line for line in logs if line.startswith("epoch    1/1")]
    assert len(lines) == 2 and ("validation 2-sample 0." in lines[0] or "validation 2-sample 1." in lines[0])
    assert "held-out tests: no split" in lines[1]


def test_one_fruit_dataset_gets_no_one_class_recognisability(split_workdir, tmp_path, quick_two_sample):
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


def test_validation_figures_read_under_plain_names():
    """The validation part's figures carry one prefix; read as plain, they replace the plain ones, nothing else."""
    figures = {"fid": 3.0, "two_sample_accuracy": 0.9, hs.validation_key("two_sample_accuracy"): 0.7,
               hs.validation_key("memorisation_ratio"): 1.1}
    assert hs.validation_key("two_sample_accuracy") == "val_two_sample_accuracy"
    assert hs.validation_as_plain(figures) == {"fid": 3.0, "two_sample_accuracy": 0.7, "memorisation_ratio": 1.1}
    assert hs.validation_as_plain({"fid": 3.0}) == {"fid": 3.0}

"""The estimate printed before training tells fruits of different sizes apart: each fruit's line is its share of
the steps (every fruit takes the same steps per epoch) plus its own evaluation, which grows with its drawings.
Nothing here is timed: the estimate's clock is a fake one that a stand-in evaluation advances by a cost per
drawing, and the step and plot probes return fixed seconds."""
import os
import shutil

import torch

from conftest import TINY_VERSION
from fruitgan.data import npz_format
from fruitgan.learn.config import TrainConfig
from gan_trainer import MultiFruitGANTrainer

SECONDS_PER_DRAWING = 0.5      # the stand-in evaluation's cost: a fruit's figures take this per training drawing
FINAL_PER_DRAWING = 0.25       # ... and its test-part figures at the end this
EPOCH_SECONDS = 10.0           # the step probe's answer for a whole group's epoch


class FakeClock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now


class SizedQuality:
    """Evaluation whose cost follows each fruit's number of drawings, as the real figures' does."""

    active = True

    def __init__(self, clock, sizes):
        self.clock, self.sizes, self.asked = clock, sizes, []

    def figures(self, group, one, epoch):
        assert len(group) == 1 and one.generate(torch.randn(1, 4, one.config.noise_dim)).shape[:2] == (1, 4)
        self.asked.append(group[0])
        self.clock.now += SECONDS_PER_DRAWING * self.sizes[group[0]]
        return {group[0]: {"epoch": epoch, "fid": 1.0}}

    def test_figures(self, fruit, one, epoch):
        raise AssertionError("the estimate prices the end's full test; it never runs it")

    def final_seconds(self, group):
        return sum(FINAL_PER_DRAWING * self.sizes[f] for f in group)


def test_each_fruit_gets_its_steps_share_and_its_own_evaluation(tiny_dataset_dir, tmp_path, monkeypatch):
    shutil.copytree(tiny_dataset_dir / "npzData", tmp_path / "npzData")
    path = npz_format.npz_path(tmp_path, "pear", TINY_VERSION)        # pear: half of apple's drawings
    packed = npz_format.read_npz(path, "pear", TINY_VERSION)
    npz_format.write_npz(path, npz_format.PackedFruit(packed.images[:6], packed.augmented[:6],
                                                      packed.source_index[:6], packed.metadata))
    cfg = TrainConfig(dataset_version=TINY_VERSION, model_name="est", epochs=10, batch_size=4, device="cpu",
                      evaluate=False, milestones=[5], fruits=["apple", "pear"], seed=3)
    trainer = MultiFruitGANTrainer(cfg, tmp_path, log=lambda _m: None)
    trainer._build_models()
    sizes = {f: trainer.streams[f].size for f in ("apple", "pear")}
    assert sizes["apple"] > sizes["pear"]
    estimate, clock = trainer.estimate, FakeClock()
    estimate.clock, estimate.quality, estimate.load = clock, SizedQuality(clock, sizes), lambda: 0.0
    monkeypatch.setattr(estimate, "epoch_seconds", lambda gi, epochs=1: EPOCH_SECONDS)
    monkeypatch.setattr(estimate, "_plot_seconds", lambda last, figures: 0.0)
    monkeypatch.setattr(estimate, "_checkpoint_seconds", lambda: 0.0)

    result = estimate.run(1, 10)
    marks = 2                                                        # milestone 5 and the last epoch
    for f in ("apple", "pear"):
        own = SECONDS_PER_DRAWING * sizes[f] * marks + FINAL_PER_DRAWING * sizes[f]
        assert result["per_fruit"][f] == EPOCH_SECONDS * 10 / 2 + own    # half the group's steps, its own evaluation
    assert result["per_fruit"]["apple"] > result["per_fruit"]["pear"]
    assert estimate.quality.asked == ["apple", "pear"]                 # each fruit evaluated on its own
    assert result["parts"]["evaluation"] == sum(result["per_fruit"].values()) - EPOCH_SECONDS * 10
    assert result["total"] == sum(result["per_fruit"].values())

    lines = estimate.lines(result, 1, 10)
    assert len(lines) == 4                                           # a heading, a line per fruit, the total
    for line, f in zip(lines[1:3], ("apple", "pear")):
        assert line.split()[0] == f and f"({sizes[f]} training images, " in line
    assert lines[1].split()[1] != lines[2].split()[1]                # the two fruits' times differ
    # Measured while other programs kept every CPU busy: one more line says the times hold only while that lasts.
    busy = estimate.lines({**result, "load": float(torch.get_num_threads() + os.cpu_count())}, 1, 10)
    assert busy[:4] == lines and len(busy) == 5 and "busy machine" in busy[4]
    assert estimate.lines({**result, "load": None}, 1, 10) == lines    # no load average (Windows): no line

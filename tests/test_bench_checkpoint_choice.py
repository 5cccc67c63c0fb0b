"""bench_checkpoint_choice.py on a tiny real run: every kept checkpoint ranked both ways, each pick measured."""
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

import bench_checkpoint_choice as bc  # noqa: E402
import bench_quality as bq  # noqa: E402
from fruitgan.learn.config import TrainConfig  # noqa: E402
from fruitgan.metrics import two_sample as ts  # noqa: E402
from fruitgan.util.user_io import UserError  # noqa: E402
from gan_trainer import MultiFruitGANTrainer  # noqa: E402


def test_each_kept_checkpoint_is_ranked_both_ways_and_each_pick_measured(tmp_path, monkeypatch, capsys):
    bq.build_dataset(tmp_path, ROOT, "apple", 28)
    cfg = TrainConfig(dataset_version=bq.BENCH_VERSION, model_name="m", epochs=2, fruits=["apple"], device="cpu",
                      steps_per_epoch=1, keep_checkpoint_every=1, evaluate=False, milestones=[2])
    MultiFruitGANTrainer(cfg, tmp_path, log=lambda _: None).train()
    monkeypatch.setattr(ts, "TWO_SAMPLE_MIN_STEPS", 20)
    monkeypatch.setattr(ts, "TWO_SAMPLE_MAX_STEPS", 20)
    monkeypatch.setattr(ts, "CHECK", ts.CHECK._replace(max_real=50))
    assert bc.main(["--kept", str(tmp_path / "models"), "--model", "m", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = [ln.split("|") for ln in out.splitlines() if ln.startswith("| ") and ln[2].isdigit()]
    assert [int(r[1]) for r in rows] == [1, 2]
    one = bc.measure(tmp_path, "m", "apple")[1]      # the cheap check sees fewer drawings than the full test
    assert one["cheap check"]["two_sample_real"] == 50 and one["full test"]["two_sample_real"] == 100
    assert one["test part"]["two_sample_real"] == 200 and one["test part"]["part"] == "test"
    picks = [ln for ln in out.splitlines() if ln.startswith("* ") and " picks epoch " in ln]
    assert [p.split()[1:3] for p in picks] == [["cheap", "check"], ["full", "test"]]
    assert "against the full test's pick on the test part" in out
    with pytest.raises(UserError, match="no model 'gone'"):
        bc.main(["--kept", str(tmp_path / "models"), "--model", "gone"])

"""generate_images.py's figures: the checkpoint drawn gets its own, the tables name only the parts a run has,
every column is explained, and the people's spot-the-fake figure stands beside the machine's.

The figures are written by hand into the summary of a model built by tests/test_model_store.build_model
(random weights): they are test data, not measurements.
"""
import json

import pytest

import generate_images as gi
from fruitgan.people.results import append_session
from test_model_store import build_model, write_latest

# A run with a held-out split: each part's figures differ, so a line showing the wrong part's is caught.
CLASSIFIER = {"confidence": 0.6, "precision": 0.7, "recall": 0.5, "density": 0.9}
LATEST = {**CLASSIFIER, "epoch": 4, "recognizability": 0.25, "fid": 9.0, "coverage": 0.1, "val_two_sample_accuracy": 0.9,
          "val_two_sample_low": 0.85, "val_two_sample_high": 0.95, "val_memorisation_ratio": 1.3}
BEST = {**CLASSIFIER, "epoch": 2, "recognizability": 0.5, "fid": 3.0, "coverage": 0.4, "val_two_sample_accuracy": 0.7,
        "val_two_sample_low": 0.65, "val_two_sample_high": 0.75, "val_memorisation_ratio": 1.2}
TEST = {"epoch": 2, "part": "test", "two_sample_accuracy": 0.8, "two_sample_low": 0.75, "two_sample_high": 0.85,
        "memorisation_ratio": 1.1}


@pytest.fixture
def split_run(tmp_path, monkeypatch):
    """Model v1 (apple, banana) whose summary holds a split run's figures; its latest.pt is of epoch 9."""
    monkeypatch.delenv("DISPLAY", raising=False)
    build_model(tmp_path, "v1", fruits=("apple", "banana"))
    write_latest(tmp_path, "v1", ("apple", "banana"), epoch=9)
    path = tmp_path / "models" / "model_v1" / "info" / "training_summary_v1.json"
    summary = json.loads(path.read_text())
    for record in summary["per_fruit"].values():
        record.update(quality=LATEST, best_quality=BEST, best_epoch=2, test_quality=TEST)
    path.write_text(json.dumps(summary))
    return tmp_path


def figures_line(workdir, checkpoint, capsys):
    assert gi.main(["--workdir", str(workdir), "v1", "apple", "--num-images", "1", "--seed", "0",
                    "--checkpoint", str(checkpoint), "--outdir", str(workdir / "out")]) == 0
    return next(line for line in capsys.readouterr().out.splitlines() if line.startswith("quality of this"))


def test_the_figures_printed_are_those_of_the_checkpoint_drawn(split_run, capsys):
    line = figures_line(split_run, "best", capsys)
    assert "best (epoch 2, test part)" in line and "0.80 (0.75-0.85)" in line and "memorisation ratio 1.10" in line
    line = figures_line(split_run, "latest", capsys)                          # epoch 9: never measured
    assert "none was measured for epoch 9" in line and "0.8" not in line and "0.9" not in line
    for checkpoint in ("milestone", 4):                                       # both hold epoch 4's weights
        line = figures_line(split_run, checkpoint, capsys)
        assert "last milestone (epoch 4, validation part)" in line and "0.90 (0.85-0.95)" in line
    line = figures_line(split_run, 2, capsys)                                 # the best epoch's kept checkpoint
    assert "best (epoch 2, test part)" in line and "0.80" in line


@pytest.mark.parametrize("test_part, says_scale", [
    ({"two_sample_accuracy": 0.8, "two_sample_low": 0.75, "two_sample_high": 0.85, "memorisation_ratio": 1.0}, True),
    ({"two_sample_accuracy": None, "two_sample_note": "not enough real drawings (12 held out, need 20)"}, False),
])
def test_figures_line_explains_the_scale_only_beside_a_figure(monkeypatch, tmp_path, test_part, says_scale):
    """The "0.5 = indistinguishable" gloss follows a figure, never a note that there is none."""
    quality = {"apple": {"best": {"epoch": 1, "fid": 1.0}, "latest": None, "best_epoch": 1, "test": test_part}}
    monkeypatch.setattr(gi.model_reported, "describe_model", lambda workdir, name: {"quality": quality})
    line = gi.drawn_figures_line(tmp_path, "v1", "apple", {"checkpoint": "best", "epoch": 1})
    assert line.startswith("quality of this checkpoint, best (epoch 1")
    assert ("0.5 = indistinguishable" in line) is says_scale and ("0.80 (0.75-0.85)" in line) is says_scale
    assert ("not enough real drawings" in line) is not says_scale


def test_a_models_table_names_the_parts_of_a_split_run_and_explains_them(split_run, capsys):
    assert gi.main(["--workdir", str(split_run), "v1"]) == 0
    out = capsys.readouterr().out
    rows = [line.split("  ") for line in out.splitlines() if line.startswith("apple")]
    assert [r[1].strip() for r in rows] == ["last milestone (epoch 4, validation part)", "best (epoch 2, test part)"]
    header = out.splitlines()[1].split()
    assert header[:3] == ["fruit", "checkpoint", "2-sample"] and "score" not in header and "recall" in header
    legend = out.split(rows[-1][0], 1)[1]
    for column in header[1:] + ["validation part", "test part"]:
        assert f"{column}: " in legend, column


def test_listing_shows_the_people_figure_beside_the_machines(split_run, capsys):
    folder = split_run / "models" / "model_v1"
    for right in (8, 6):             # two sessions of 10 drawings: 8 and then 6 judged right
        images = [{"truth": "fake", "answer": "fake" if i < right else "real"} for i in range(10)]
        append_session(folder, "apple", {"seed": right, "images": images})
    assert gi.main(["--workdir", str(split_run)]) == 0
    out = capsys.readouterr().out
    apple = next(line for line in out.splitlines() if line.startswith("v1") and " apple " in line).split()
    banana = next(line for line in out.splitlines() if line.startswith("v1") and " banana " in line).split()
    # 2-sample (test part), then people: 14 of 20 right, bootstrapped over the two sessions (0.6, 0.7 or 0.8).
    assert apple[5:11] == ["0.80", "(0.75-0.85)", "0.70", "(0.60-0.80)", "2", "1.10"]
    assert banana[5:9] == ["0.80", "(0.75-0.85)", "-", "-"]                  # no one has judged bananas
    assert "  people: " in out and "  sessions: " in out

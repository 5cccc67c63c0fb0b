"""The report's parts (fruitgan/report/): commands that reproduce a run, the real drawings beside the fakes,
and the prose computed from the committed runs."""
import json
import shlex
import shutil

import numpy as np

from conftest import ROOT, run_script

from fruitgan.learn.config import TrainConfig
from fruitgan.report import analysis, findings, notebook, runs, tables

REPORT = ROOT / "report_assets" / "model_report"
HELDOUT = ROOT / "report_assets" / "model_heldout"


def recipe(cfg: TrainConfig) -> dict:
    return {k: v for k, v in cfg.to_dict().items() if k not in runs.NOT_RECIPE}


def test_the_printed_training_command_trains_the_saved_recipe():
    """Parsed by train_gan.py's own parser, each committed run's command gives back the run's settings, read as
    the code read them when it trained (a setting saved before it existed: as it was then)."""
    import train_gan

    for folder in (REPORT, HELDOUT):
        run = runs.Run.open(folder)
        command = runs.train_command(run.config)
        args = train_gan.build_parser().parse_args(shlex.split(command)[2:])
        given = TrainConfig(**train_gan.given_settings(args))
        assert recipe(given) == recipe(TrainConfig.from_saved(run.config, "test"))
    # The held-out run trained with DiffAugment, off by default since: the flag says it. It predates augment_p,
    # whose value then is today's default: nothing to add.
    heldout = runs.Run.open(HELDOUT).config
    assert "--diff-augment translation,cutout" in runs.train_command(heldout)
    assert "augment_p" not in heldout and not runs.recipe_notes(heldout)


def test_a_setting_saved_before_it_existed_is_spelled_out_where_today_s_default_differs(monkeypatch):
    old = {k: v for k, v in runs.Run.open(HELDOUT).config.items() if k != "d_channels"}
    monkeypatch.setitem(runs.BEFORE_IT_EXISTED, "d_channels", 16)        # as if the width had been 16 then
    assert "--d-channels 16" in runs.train_command(old)
    assert any("d_channels 16" in n for n in runs.recipe_notes(old))


def test_a_changed_setting_is_printed_and_a_default_is_not():
    config = json.loads(next((HELDOUT / "info").glob("training_config_*.json")).read_text())
    assert "--g-channels" not in runs.train_command(config) and "--ema-decay" not in runs.train_command(config)
    config.update(g_channels=64, ema_decay=0.0, evaluate=False)
    command = runs.train_command(config)
    assert "--g-channels 64" in command and "--ema-decay 0.0" in command and "--no-eval" in command


def test_the_real_drawings_beside_a_split_run_are_its_test_part(tmp_path):
    """Derived from rawData/ by the split's own rule, they equal the test part of a dataset the pipeline made."""
    import data_loader
    from fruitgan.report.figures import heldout_test_drawings

    shutil.copytree(ROOT / "rawData" / "sample", tmp_path / "rawData" / "sample")
    count = 400                                 # apple's bitmaps at 28 px: 400 real, a split of 200 (67 + 133)
    for script, args in (("rawDataToImage.py", ["--resolution", "28", "--fruits", "apple", "--count", str(count),
                                                "--no-augment", "--version", "t"]),
                         ("imageToNPZ.py", ["--version", "t"])):
        r = run_script(script, "--workdir", str(tmp_path), "--yes", *args)
        assert r.returncode == 0, r.stderr
    ds = data_loader.load_fruit(tmp_path, "t", "apple")
    test = ds.pixels[ds.test_index].numpy()
    derived = heldout_test_drawings(tmp_path, "apple", count, 28)
    assert derived is not None and len(test) > 0 and np.array_equal(derived, test)
    training = ds.pixels[ds.train_index].numpy()
    assert not any(np.array_equal(derived[0], t) for t in training)      # none of them trained
    assert heldout_test_drawings(tmp_path, "apple", 95, 28) is None       # too few for a split: none
    # The committed held-out run: as many as the run's own test part, for each fruit.
    run = runs.Run.open(HELDOUT)
    for fruit, h in run.histories.items():
        drawn = heldout_test_drawings(ROOT, fruit, run.dataset("real_images")[fruit], run.resolution)
        assert len(drawn) == h["num_test_images"] == h["test_quality"]["two_sample_real"]


def test_prose_of_the_committed_runs():
    run, held = runs.Run.open(REPORT), runs.Run.open(HELDOUT)
    grey = analysis.odd_grids(run, [1, 30])
    assert "Why the epoch-1 grids are flat grey" in grey and "steps from its start" in grey
    assert "already show" in analysis.odd_grids(run, [30])               # measured, not assumed
    assert "Why pear is \"recognised\" at epoch 1" in analysis.first_recognised(run)
    text = findings.verdicts(held)
    t = held.histories["apple"]["test_quality"]
    assert f"two-sample accuracy {tables.interval(t)} on {t['two_sample_real']} test drawings" in text
    text = findings.verdicts(run)
    assert text.count("not measured: not enough real drawings") == len(run.fruits)
    assert text.count("*Author's opinion*") == len(run.fruits) + 1
    copying = findings.copying(run, held)
    assert "apple (1.15 vs 1.65)" in copying and "banana (" not in copying    # banana's FID is above real vs real


def test_opinion_and_people_only_from_files(tmp_path):
    shutil.copytree(HELDOUT / "info", tmp_path / "info")
    run = runs.Run.open(tmp_path)
    assert analysis.opinion(run) == {} and "holds no author's opinion" in findings.verdicts(run)
    assert findings.people_section(tmp_path, ["apple"]).endswith("\n- *apple*: no one has taken it yet.")
    # One finished session, written by the spot-the-fake test's own module: 3 of 4 judged right.
    from fruitgan.people.results import append_session

    pairs = (("real", "real"), ("fake", "fake"), ("fake", "real"), ("real", "real"))
    append_session(tmp_path, "apple", {"seed": 0, "images": [{"id": str(i), "truth": t, "answer": a, "ms": 1}
                                                             for i, (t, a) in enumerate(pairs)]})
    text = findings.people_section(tmp_path, ["apple", "banana"])
    assert "*apple*: 0.75 [" in text and "over 4 drawings in 1 session(s)" in text
    assert "*banana*: no one has taken it yet." in text


def test_report_source_splits_into_cells():
    cells = notebook.cell_sources("# T\n\ntext\n<!-- cell -->\n## b\n```python\n# 1.1 x\nx = 1\n```\nafter\n")
    assert cells == [("markdown", "# T\n\ntext"), ("markdown", "## b"), ("code", "# 1.1 x\nx = 1"),
                     ("markdown", "after")]


def test_verdict_names_the_cheap_check_only_where_the_validation_figure_came_from_it():
    test = {"epoch": 3, "two_sample_accuracy": 0.7, "two_sample_low": 0.65, "two_sample_high": 0.75,
            "two_sample_decided": True, "two_sample_epochs": 200}
    row = {"test": test, "text": "0.70", "n": 500, "memo": None,
           "validation": [{"epoch": 3, "val_two_sample_accuracy": 0.55, "val_two_sample_epochs": 40}]}
    assert "a quicker check (fewer passes) reads lower" in findings.measured_verdict(row)
    row["validation"][0]["val_two_sample_epochs"] = 200        # a full test at milestones: selection alone
    text = findings.measured_verdict(row)
    assert "quicker" not in text and "milestones on the same drawings flatters, so the test part is" in text

"""report.ipynb cannot rot: it is executed, every cell, against a tiny real run made here; the committed copy is
built from make_report.py as it is, and executed against the committed runs."""
import json
import os
import re
import shutil

import pytest

from conftest import ROOT, TINY_VERSION, run_script

# The assignment's steps, exactly as it numbers them: each labels one cell, once, in this order.
STEP_LABELS = [f"{step}.{i}" for step, count in ((1, 8), (2, 8), (3, 5), (4, 5)) for i in range(1, count + 1)]
LABEL = re.compile(r"^#+\s*(\d+\.\d+)\b")     # "### 4.1 The training run" or "# 1.1 Input layer: ..."


def step_labels(nb):
    """The step labels of a notebook in order: the first line of a cell (a markdown heading or a code cell's
    first comment) that starts with a number like 2.4."""
    return [m.group(1) for c in nb.cells if (m := LABEL.match(c.source.split("\n", 1)[0].strip()))]


def outputs_of(nb):
    return [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]


def stream_text(nb):
    return "\n".join(o.get("text", "") for o in outputs_of(nb) if o.get("output_type") == "stream")


def markdown_text(nb):
    """What the cells wrote as Markdown: the analysis and the other computed prose."""
    return "\n".join("".join(o["data"]["text/markdown"]) for o in outputs_of(nb)
                     if "text/markdown" in o.get("data", {}))


def real_vs_fake_cells(nb):
    import make_report

    return [c for c in nb.cells if c.cell_type == "code" and c.source.startswith("# " + make_report.REAL_VS_FAKE)]


def drew_an_image(cell):
    return any("image/png" in o.get("data", {}) for o in cell.get("outputs", []))


def with_test_part(source, dest, figures):
    """A copy of run ``source`` in which each fruit of ``figures`` ({fruit: (right, n)}) has a held-out split in
    the trainer's format of today: validation figures (val_ keys) at every milestone, and test_quality, the best
    checkpoint measured once on n test drawings (and n fakes), ``right`` of the 2n labelled right."""
    from fruitgan.metrics.evaluation import TWO_SAMPLE_MAX_HALF_WIDTH, wilson_interval

    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("checkpoints"))
    summary_path = next((dest / "info").glob("training_summary_*.json"))
    summary = json.loads(summary_path.read_text())
    for fruit, (right, n) in figures.items():
        path = dest / "info" / f"training_history_{fruit}.json"
        h = json.loads(path.read_text())
        low, high = wilson_interval(right, 2 * n)
        half = (high - low) / 2
        test = {"epoch": h["best_epoch"], "part": "test", "two_sample_accuracy": right / (2 * n),
                "two_sample_low": low, "two_sample_high": high, "two_sample_half_width": half,
                "two_sample_n": 2 * n, "two_sample_real": n, "two_sample_decided": half <= TWO_SAMPLE_MAX_HALF_WIDTH,
                "memorisation_ratio": 1.02, "memorisation_n_heldout": n, "seconds": 1.0}
        if not test["two_sample_decided"]:
            test["two_sample_note"] = (f"too few held-out drawings to call ({n} real: the 95% interval "
                                       f"{low:.2f}-{high:.2f} is wider than +-{TWO_SAMPLE_MAX_HALF_WIDTH})")
        v_low, v_high = wilson_interval(right + 10, 2 * n)
        for q in h["quality"]:
            q.update(val_two_sample_accuracy=(right + 10) / (2 * n), val_two_sample_low=v_low,
                     val_two_sample_high=v_high, val_memorisation_ratio=1.01)
            for key in ("val_two_sample_note", "val_memorisation_note"):
                q.pop(key, None)
        h.update(num_heldout_real_images=n + n // 2, num_validation_images=n // 2, num_test_images=n,
                 split_note=None, test_quality=test)
        path.write_text(json.dumps(h))
        record = summary["per_fruit"][fruit]
        record.update(test_quality=test, quality=h["quality"][-1],
                      best_quality=next(q for q in h["quality"] if q["epoch"] == h["best_epoch"]))
    summary_path.write_text(json.dumps(summary))
    return dest


def test_report_notebook_executes_against_a_tiny_run(tiny_workdir):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    import make_report
    from fruitgan.metrics.evaluation import wilson_interval

    # rawData/ beside it: the trainer's all-fruit recogniser learns from the bundled drawings, as in a real run.
    (tiny_workdir / "rawData").symlink_to(ROOT / "rawData")
    r = run_script("train_gan.py", "--workdir", str(tiny_workdir), "--yes", "--dataset-version", TINY_VERSION,
                   "--model-name", "nb", "--epochs", "2", "--batch-size", "8", "--eval-samples", "16",
                   "--milestones", "1", "--device", "cpu", "--description", "notebook check")
    assert r.returncode == 0, r.stderr
    nb = make_report.build()
    assert step_labels(nb) == STEP_LABELS                 # 1.1-1.8, 2.1-2.8, 3.1-3.5, 4.1-4.5, each once, in order
    # The run of 4.x is the tiny one: its 12 drawings per fruit are too few for a held-out split. The held-out run
    # is a copy of it in today's format: apple on 200 test drawings, banana on 40 (too few to call), pear none.
    run_dir = tiny_workdir / "models" / "model_nb"
    held = with_test_part(run_dir, tiny_workdir / "held" / "model_nb", {"apple": (272, 200), "banana": (50, 40)})
    os.environ["FRUITGAN_REPORT_RUN"], os.environ["FRUITGAN_REPORT_HELDOUT_RUN"] = str(run_dir), str(held)
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT)}}).execute()   # raises on any cell error
    finally:
        for var in ("FRUITGAN_REPORT_RUN", "FRUITGAN_REPORT_HELDOUT_RUN"):
            os.environ.pop(var, None)
    assert not [o for o in outputs_of(nb) if o.get("output_type") == "error"]
    text, analysis = stream_text(nb), markdown_text(nb)
    assert "model nb" in text and "notebook check" in text     # it really read the tiny run
    # 4.1 gives the dataset command in full, from the run's saved settings (the fixture's flags, defaults named).
    assert (f"rawDataToImage.py --yes --version {TINY_VERSION} --resolution 28 --fruits apple,banana,pear "
            "--count 12 --augment --seed 0 --quality standard\n") in text
    assert "--milestones 1 --eval-samples 16" in text            # ... and the training command the recipe it had
    # 4.2 and the held-out section: real drawings beside the fakes, one figure per run, each drawn.
    figures = real_vs_fake_cells(nb)
    assert len(figures) == 2 and all(drew_an_image(c) for c in figures)
    # Too few real drawings for a split: said in words, never a number.
    assert "pear*: not measured: not enough real drawings" in analysis
    assert "This run has no held-out drawings: too few real drawings for a split." in analysis
    # Held-out figures from the test part, with their 95% interval; where it is too wide, the report says so.
    low, high = wilson_interval(272, 400)
    assert f"two-sample accuracy {272 / 400:.2f} [{low:.2f}, {high:.2f}] on 200 test drawings" in analysis
    assert "*banana*: two-sample accuracy" in analysis and "The interval is too wide to call" in analysis
    # Without a split the recogniser's reference is its own held-out drawings, pooled, with their count.
    assert "drawings pooled over the fruits" in text and "its accuracy is " in analysis and "standard error" in analysis
    # Not the committed run: no reading of its pictures, the reader is sent to the grids instead.
    assert "This report holds no reading of this run's pictures" in analysis
    assert "picked among 2 milestones on the same figures it reports" in analysis
    assert not re.search(r"\bnan\b", analysis, re.IGNORECASE)   # no figure left undefined
    assert len([o for o in outputs_of(nb) if "image/png" in o.get("data", {})]) >= 6


def test_committed_report_has_outputs_from_the_real_run():
    nbformat = pytest.importorskip("nbformat")
    import make_report

    nb = nbformat.read(ROOT / "report.ipynb", as_version=4)
    # Built from make_report.py as it is now (rebuild with python make_report.py --execute), and executed.
    assert [c.source for c in nb.cells] == [c.source for c in make_report.build().cells]
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("execution_count") for c in code)
    assert not [o for o in outputs_of(nb) if o.get("output_type") == "error"]
    assert step_labels(nb) == STEP_LABELS
    assert all(drew_an_image(c) for c in real_vs_fake_cells(nb)) and len(real_vs_fake_cells(nb)) == 2
    assets = ROOT / "report_assets" / "model_report" / "info"
    config = json.loads(next(assets.glob("training_config_*.json")).read_text())
    assert config["epochs"] >= 400 and len(config["fruits"]) == 7
    assert config["resolution"] == 64 and config["batch_size"] == 64     # the assignment's defaults
    summary = json.loads(next(assets.glob("training_summary_*.json")).read_text())
    assert summary["epochs_done"] >= 400 and summary["status"] == "complete"
    analysis = markdown_text(nb)
    assert not re.search(r"\bnan\b", analysis, re.IGNORECASE)
    # The committed run gets the author's reading of its pictures, labelled, and where the recogniser and the
    # pictures disagree (grapes: recognised, yet tangled scribbles) the text says so and which to trust.
    assert "the author's reading of this run's epoch-400 grids" in analysis
    assert "yet the pictures above do not show grapes" in analysis and "Trust the pictures" in analysis
    # The held-out run: 400 epochs; its figures from the test part with a 95% interval (today's format), or, for a
    # run from before the split, its old milestone figures, which the report says were not on a test part.
    held = ROOT / "report_assets" / "model_heldout"
    summary = json.loads(next((held / "info").glob("training_summary_*.json")).read_text())
    assert summary["epochs_done"] >= 400 and summary["status"] == "complete"
    histories = sorted((held / "info").glob("training_history_*.json"))
    assert histories
    for path in histories:
        h = json.loads(path.read_text())
        test = h.get("test_quality")
        if test:
            assert test["part"] == "test" and test["epoch"] == h["best_epoch"]
            assert 0.0 <= test["two_sample_low"] <= test["two_sample_accuracy"] <= test["two_sample_high"] <= 1.0
            assert not any("two_sample_accuracy" in q for q in h["quality"])    # milestones: validation only
            shown = (f"two-sample accuracy {test['two_sample_accuracy']:.2f} [{test['two_sample_low']:.2f}, "
                     f"{test['two_sample_high']:.2f}] on {test['two_sample_real']} test drawings")
            assert shown in analysis
        else:
            assert 0.0 <= h["quality"][-1]["two_sample_accuracy"] <= 1.0
            assert f"*{h['fruit']}*: not measured on a separate test part" in analysis


def test_collect_for_another_notebook_leaves_the_committed_assets_alone(tmp_path, capsys):
    import hashlib

    import make_report
    from test_model_store import build_model

    def snapshot(folder):
        return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
                for p in sorted(folder.rglob("*")) if p.is_file()}

    committed = ROOT / "report_assets"
    before = snapshot(committed)
    build_model(tmp_path, "elsewhere", fruits=("apple",))
    out = tmp_path / "nb" / "report.ipynb"
    build_model(tmp_path, "held", fruits=("apple", "banana"), ema=True)
    assert make_report.main(["--collect", str(tmp_path / "models" / "model_elsewhere"), "--out", str(out),
                             "--collect-heldout", str(tmp_path / "models" / "model_held")]) == 0
    assert snapshot(committed) == before
    # The held-out run keeps its first fruit's generator (step 3 draws from it), no other weights.
    held = tmp_path / "nb" / "report_assets" / "model_heldout"
    assert sorted(p.name for p in held.rglob("*.pt")) == ["generator_apple.pt"]
    # ... holding only the moving average it is drawn from: the same images, about half the bytes.
    from fruitgan.models import store as model_store
    import torch
    from gan_model import generate

    source = tmp_path / "models" / "model_held"
    original, _ = model_store.ModelFolder.at(source).read_generator("apple")
    copied, used_ema = model_store.ModelFolder.at(held).read_generator("apple")
    noise = torch.randn(4, copied.config.noise_dim, generator=torch.Generator().manual_seed(0))
    assert used_ema and torch.equal(generate(copied, noise), generate(original, noise))
    assert (held / "generator_apple.pt").stat().st_size < 0.75 * (source / "generator_apple.pt").stat().st_size
    # Collecting the report's own copy onto itself would delete it first: refused, the copy kept.
    with pytest.raises(make_report.UserError, match="already the report's copy"):
        make_report.collect(held, held)
    assert (held / "generator_apple.pt").is_file()
    copied = tmp_path / "nb" / "report_assets" / "model_report" / "info" / "training_config_elsewhere.json"
    assert copied.is_file() and out.is_file() and f"collected into {copied.parent.parent}" in capsys.readouterr().out
    # Another notebook in the repository folder gets its own assets folder, not report_assets/.
    assert make_report.assets_for(ROOT / "draft.ipynb") == ROOT / "draft_assets" / "model_report"
    assert make_report.assets_for(ROOT / "report.ipynb") == make_report.ASSETS

"""fruitgan/learn/plots.py: history PNGs per fruit and for all fruits, written atomically."""
import json
import subprocess
import sys

import pytest
from PIL import Image

from fruitgan.learn import plots as tp
from conftest import ROOT
from fruitgan.util.safe_files import FRUITS

REPORT = ROOT / "report_assets" / "model_report"
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


HELDOUT = ROOT / "report_assets" / "model_heldout"      # the run with a held-out split: every figure recorded


def _history(fruit: str = "apple", run=REPORT) -> dict:
    return json.loads((run / "info" / f"training_history_{fruit}.json").read_text())


def _assert_png(path):
    assert path.read_bytes()[:8] == PNG_SIGNATURE
    with Image.open(path) as image:
        assert image.width > image.height > 200       # a landscape figure, not an empty stub


def _titles(fig):
    return [ax.get_title() for ax in fig.axes if ax.get_visible()]


def test_real_history_gives_a_png_with_every_panel(tmp_path):
    history = _history(run=HELDOUT)
    out = tp.plot_fruit_history(history, tmp_path / "training_history_apple.png")
    assert out == tmp_path / "training_history_apple.png"
    _assert_png(out)
    titles = _titles(tp.fruit_figure(history, "apple"))
    assert titles[:2] == ["Losses", "Discriminator outputs"]
    assert any(t.startswith("Two-sample") for t in titles) and any(t.startswith("Memorisation") for t in titles)
    assert any(t.startswith("Recognisability") for t in titles) and any(t.startswith("FID") for t in titles)
    assert not any("no value" in t for t in titles)


def test_a_run_without_a_held_out_split_says_so_in_its_panels():
    titles = _titles(tp.fruit_figure(_history(), "apple"))     # the 64 px report run: no split at that size
    assert "Two-sample accuracy: no value" in titles and "Memorisation ratio: no value" in titles
    assert not any(t.startswith("Recognisability") and "no value" in t for t in titles)


def test_best_epoch_is_marked(tmp_path):
    history = _history("banana")
    fig = tp.fruit_figure(history, "banana")
    labels = fig.axes[0].get_legend_handles_labels()[1]
    assert f"best epoch {history['best_epoch']}" in labels


@pytest.mark.parametrize("history", [{"fruit": "pear", "epochs": [], "quality": [], "best_epoch": None}, {}])
def test_empty_or_old_history_still_draws(tmp_path, history):
    out = tp.plot_fruit_history(history, tmp_path / "training_history_pear.png")
    _assert_png(out)
    fig = tp.fruit_figure(history, "pear")
    assert "no quality evaluation yet" in [t.get_text() for ax in fig.axes for t in ax.texts]


def test_none_quality_values_are_skipped_not_plotted_as_zero(tmp_path):
    history = _history()
    for i, q in enumerate(history["quality"]):
        q["two_sample_accuracy"] = 0.9 - 0.04 * i
        q["memorisation_ratio"] = None                # e.g. not enough real drawings
    history["quality"][-1]["fid"] = None
    _assert_png(tp.plot_fruit_history(history, tmp_path / "h.png"))
    fig = tp.fruit_figure(history, "apple")
    by_title = {ax.get_title().split("\n")[0].split(":")[0]: ax for ax in fig.axes if ax.get_visible()}
    assert "Memorisation ratio: no value" in _titles(fig)
    ratio_lines = [line for line in by_title["Memorisation ratio"].lines if line.get_label() == "ratio"]
    assert ratio_lines and all(len(line.get_xdata()) == 0 for line in ratio_lines)
    fid_line = next(line for line in by_title["FID (lower is better)"].lines if line.get_label() == "FID")
    assert len(fid_line.get_ydata()) == len(history["quality"]) - 1 and 0 not in list(fid_line.get_ydata())
    accuracy = by_title["Two-sample accuracy"]
    assert [line.get_ydata()[0] for line in accuracy.lines if line.get_label().startswith("0.5")] == [0.5]


def test_all_fruits_figure_for_the_committed_histories(tmp_path):
    histories = {f: _history(f) for f in FRUITS}
    out = tp.plot_all_fruits(histories, tmp_path / "training_history_all.png")
    _assert_png(out)
    fig = tp.all_fruits_figure(histories)
    assert [line.get_label() for line in fig.axes[0].lines] == list(FRUITS)


def test_all_fruits_names_fruits_without_a_value():
    histories = {f: _history(f) for f in ("apple", "pear")}
    for q in histories["pear"]["quality"]:
        q["recognizability"] = None
    titles = _titles(tp.all_fruits_figure(histories))
    assert "Recognisability\n(no value: pear)" in titles


def test_write_is_atomic_and_keeps_the_old_png_when_drawing_fails(tmp_path, monkeypatch):
    target = tmp_path / "training_history_apple.png"
    target.write_bytes(b"old picture")

    def broken_render(*args, **kwargs):
        raise RuntimeError("renderer failed")

    from matplotlib.backends.backend_agg import FigureCanvasAgg
    monkeypatch.setattr(FigureCanvasAgg, "print_png", broken_render)
    with pytest.raises(RuntimeError):
        tp.plot_fruit_history(_history(), target)
    assert target.read_bytes() == b"old picture"
    assert [p.name for p in tmp_path.iterdir()] == [target.name]     # no temp file left behind
    monkeypatch.undo()
    tp.plot_fruit_history(_history(), target)
    _assert_png(target)
    assert [p.name for p in tmp_path.iterdir()] == [target.name]


def test_drawing_leaves_the_callers_matplotlib_alone(tmp_path):
    """No pyplot (whose figures would pile up over 400 redraws) and no change to the chosen backend."""
    code = ("import matplotlib, sys, json; from fruitgan.learn import plots as tp; matplotlib.use('svg'); "
            f"h = json.load(open({str(REPORT / 'info' / 'training_history_apple.json')!r})); "
            f"tp.plot_fruit_history(h, {str(tmp_path / 'a.png')!r}); "
            f"tp.plot_all_fruits({{'apple': h}}, {str(tmp_path / 'b.png')!r}); "
            "assert matplotlib.get_backend() == 'svg', matplotlib.get_backend(); "
            "assert 'matplotlib.pyplot' not in sys.modules")
    proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    _assert_png(tmp_path / "a.png")


def test_title_says_what_the_fruit_trained_on_when_drawings_were_held_out():
    history = {**_history(), "num_images": 1000, "num_real_images": 1000, "num_train_images": 800,
               "num_heldout_real_images": 200}
    title = tp.fruit_figure(history, "apple")._suptitle.get_text()
    assert "trained on 800 images, 200 real held out" in title and "1000 images" not in title
    del history["num_heldout_real_images"]
    assert "1000 images (1000 real)" in tp.fruit_figure(history, "apple")._suptitle.get_text()

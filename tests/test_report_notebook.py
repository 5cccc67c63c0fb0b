"""report.ipynb cannot rot: it is executed, every cell, against a tiny real run made here."""
import json
import os
import re

import pytest

from conftest import ROOT, TINY_VERSION, run_script


def test_report_notebook_executes_against_a_tiny_run(tiny_workdir):
    nbformat = pytest.importorskip("nbformat")
    from nbclient import NotebookClient

    # rawData/ beside it: the trainer's all-fruit recogniser learns from the bundled drawings, as in a real run.
    (tiny_workdir / "rawData").symlink_to(ROOT / "rawData")
    r = run_script("train_gan.py", "--workdir", str(tiny_workdir), "--yes", "--dataset-version", TINY_VERSION,
                   "--model-name", "nb", "--epochs", "2", "--batch-size", "8", "--eval-samples", "16",
                   "--milestones", "1", "--device", "cpu", "--description", "notebook check")
    assert r.returncode == 0, r.stderr
    nb = nbformat.read(ROOT / "report.ipynb", as_version=4)
    assert len(nb.cells) > 20
    # Both runs the notebook reads are the tiny one: its 12 drawings per fruit are too few for a held-out split.
    for var in ("FRUITGAN_REPORT_RUN", "FRUITGAN_REPORT_HELDOUT_RUN"):
        os.environ[var] = str(tiny_workdir / "models" / "model_nb")
    try:
        NotebookClient(nb, timeout=300, kernel_name="python3",
                       resources={"metadata": {"path": str(ROOT)}}).execute()   # raises on any cell error
    finally:
        for var in ("FRUITGAN_REPORT_RUN", "FRUITGAN_REPORT_HELDOUT_RUN"):
            os.environ.pop(var, None)
    outputs = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", [])]
    assert not [o for o in outputs if o.get("output_type") == "error"]
    text = "\n".join(o.get("text", "") for o in outputs if o.get("output_type") == "stream")
    assert "model nb" in text and "notebook check" in text     # it really read the tiny run
    # 4.1 gives the dataset command in full, from the run's saved settings (the fixture's flags, defaults named).
    assert (f"rawDataToImage.py --yes --version {TINY_VERSION} --resolution 28 --fruits apple,banana,pear "
            "--count 12 --augment --seed 0 --quality standard\n") in text
    assert "the 3-fruit run holds out: no drawings" in text and "none for apple: not enough real drawings" in text
    assert "each noise vector now gives its own drawing" in text     # step 3.6 drew the trained generator
    analysis = "\n".join("".join(o["data"]["text/markdown"]) for o in outputs if "text/markdown" in o.get("data", {}))
    # Too few real drawings for a split: the held-out part says so instead of giving a number.
    assert "On drawings the GANs never saw:* not measured: " in analysis and "not enough real drawings" in analysis
    # No split either for the recogniser's reference: its own held-out drawings, pooled, with their count.
    assert "real drawings the recogniser never trained on: **" in analysis and "pooled over the fruits" in analysis
    assert not re.search(r"\bnan\b", analysis)                   # no figure left undefined
    images = [o for o in outputs if "image/png" in o.get("data", {})]
    assert len(images) >= 5                                      # grids, curves and milestone images were drawn


def test_committed_report_has_outputs_from_the_real_run():
    nbformat = pytest.importorskip("nbformat")
    nb = nbformat.read(ROOT / "report.ipynb", as_version=4)
    code = [c for c in nb.cells if c.cell_type == "code"]
    assert code and all(c.get("outputs") for c in code if "def " not in c.source.split("\n")[0])
    assets = ROOT / "report_assets" / "model_report" / "info"
    config = json.loads(next(assets.glob("training_config_*.json")).read_text())
    assert config["epochs"] >= 400 and len(config["fruits"]) == 7
    assert config["resolution"] == 64 and config["batch_size"] == 64     # the assignment's defaults
    summary = json.loads(next(assets.glob("training_summary_*.json")).read_text())
    assert summary["epochs_done"] >= 400 and summary["status"] == "complete"
    # The held-out run: 400 epochs on 28 px bitmaps, its figures measured on held-out drawings.
    held = ROOT / "report_assets" / "model_heldout"
    summary = json.loads(next((held / "info").glob("training_summary_*.json")).read_text())
    assert summary["epochs_done"] >= 400 and summary["status"] == "complete"
    for history in (held / "info").glob("training_history_*.json"):
        quality = json.loads(history.read_text())["quality"]
        assert quality and 0.0 <= quality[-1]["two_sample_accuracy"] <= 1.0


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
    import model_store
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

"""The floor plan: the assignment's scripts on top, one package beneath; every module imports without side
effects and every script has a main()."""
import subprocess
import sys

import pytest

from conftest import ROOT

TOP = sorted(p.stem for p in ROOT.glob("*.py"))
PACKAGE = sorted(".".join(p.relative_to(ROOT).with_suffix("").parts) for p in (ROOT / "fruitgan").rglob("*.py"))
SCRIPTS = ["rawDataToImage", "imageToNPZ", "train_gan", "generate_images", "run_pipeline", "make_report"]
# The assignment's eight modules, plus the pipeline and report scripts: nothing else lives at the top.
PROMISED = {"rawDataToImage", "imageToNPZ", "train_gan", "generate_images", "data_loader", "gan_model",
            "gan_trainer", "cost_analysis_training", "run_pipeline", "make_report", "spot_the_fake"}


def test_the_top_level_holds_the_promised_scripts_only():
    assert set(SCRIPTS) <= set(TOP)
    assert set(TOP) <= PROMISED, set(TOP) - PROMISED


@pytest.mark.parametrize("module", TOP + PACKAGE)
def test_import_has_no_side_effects(module, tmp_path):
    check = f"import {module}, sys; assert not {module in SCRIPTS!r} or callable({module}.main)"
    proc = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""     # nothing printed, no warnings
    assert list(tmp_path.iterdir()) == []              # nothing written where it ran


def test_the_default_workdir_is_the_scripts_folder(tmp_path):
    """safe_files.default_workdir builds the scripts' folder from its own __file__: still right after the move,
    and from any current folder."""
    code = "from fruitgan.util.safe_files import default_workdir; print(default_workdir())"
    proc = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, capture_output=True, text=True, timeout=60,
                          env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == str(ROOT.resolve())
    assert (ROOT / "train_gan.py").is_file() and (ROOT / "rawData").is_dir()


def test_a_script_runs_from_any_folder(tmp_path):
    """`python /path/to/train_gan.py --help` from elsewhere finds its package (the script's folder is on sys.path)."""
    proc = subprocess.run([sys.executable, str(ROOT / "train_gan.py"), "--help"], cwd=tmp_path, capture_output=True,
                          text=True, timeout=60, env={"PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert "--workdir" in proc.stdout


def test_contributing_is_the_floor_plan():
    """CONTRIBUTING.md's tree names every module of the package and every script, and nothing that is gone."""
    text = (ROOT / "CONTRIBUTING.md").read_text(encoding="utf-8")
    tree = text.split("```", 2)[1]
    for module in TOP + [m for m in PACKAGE if not m.endswith("__init__")]:
        assert f"{module.rsplit('.', 1)[-1]}.py" in tree, module
    named = {n for n in __import__("re").findall(r"\b([\w]+\.py)\b", tree)}
    existing = {p.name for p in ROOT.glob("*.py")} | {p.name for p in (ROOT / "fruitgan").rglob("*.py")}
    assert named <= existing, named - existing

"""Every top-level module imports without side effects; every script has a main()."""
import subprocess
import sys

import pytest

from conftest import ROOT

MODULES = sorted(p.stem for p in ROOT.glob("*.py"))
SCRIPTS = ["rawDataToImage", "imageToNPZ", "train_gan", "generate_images", "run_pipeline", "make_report"]


def test_the_promised_scripts_exist():
    assert set(SCRIPTS) <= set(MODULES)


@pytest.mark.parametrize("module", MODULES)
def test_import_has_no_side_effects(module, tmp_path):
    check = f"import {module}, sys; assert not {module in SCRIPTS!r} or callable({module}.main)"
    proc = subprocess.run([sys.executable, "-c", check], cwd=tmp_path, capture_output=True, text=True,
                          timeout=120, env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == "" and proc.stderr == ""     # nothing printed, no warnings
    assert list(tmp_path.iterdir()) == []              # nothing written where it ran

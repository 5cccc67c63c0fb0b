"""Shared fixtures: the repository root on sys.path and a throw-away work folder."""
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SAMPLE = ROOT / "rawData" / "sample"


@pytest.fixture
def workdir(tmp_path: Path) -> Path:
    """An empty work folder holding a copy of the bundled real sample in rawData/sample/."""
    shutil.copytree(SAMPLE, tmp_path / "rawData" / "sample")
    return tmp_path


def run_script(script: str, *args: str, input: str | None = None, timeout: float = 300, env=None):
    """Run one of the project's scripts as a user would; returns the CompletedProcess (text)."""
    import os
    import subprocess

    full_env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
    full_env.pop("DISPLAY", None)
    if env:
        full_env.update(env)
    return subprocess.run([sys.executable, str(ROOT / script), *args], input=input, capture_output=True,
                          text=True, timeout=timeout, cwd=ROOT, env=full_env,
                          stdin=None if input is not None else subprocess.DEVNULL)


TINY_VERSION = "tiny"
TINY_FRUITS = "apple,banana,pear"


@pytest.fixture(scope="session")
def tiny_dataset_dir(tmp_path_factory) -> Path:
    """A work folder with a real 28 px dataset version 'tiny': 12 images per fruit for three fruits,
    made by the project's own scripts from the bundled real drawings (augmented up to 12)."""
    base = tmp_path_factory.mktemp("tinydata")
    shutil.copytree(SAMPLE, base / "rawData" / "sample")
    r = run_script("rawDataToImage.py", "--workdir", str(base), "--yes", "--version", TINY_VERSION,
                   "--resolution", "28", "--count", "12", "--augment", "--fruits", TINY_FRUITS)
    assert r.returncode == 0, r.stderr
    r = run_script("imageToNPZ.py", "--workdir", str(base), "--yes", "--version", TINY_VERSION)
    assert r.returncode == 0, r.stderr
    return base


@pytest.fixture
def tiny_workdir(tiny_dataset_dir: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny dataset work folder (npzData only) for one test to write models into."""
    shutil.copytree(tiny_dataset_dir / "npzData", tmp_path / "npzData")
    return tmp_path

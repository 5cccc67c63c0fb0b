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


TINY_RUN = "t1"
TINY_RUN_DESCRIPTION = "tiny test run"
TINY_RUN_FLAGS = ("--epochs", "2", "--batch-size", "8", "--eval-samples", "16", "--milestones", "1", "--device", "cpu")


@pytest.fixture(scope="session")
def tiny_run(tiny_dataset_dir: Path, tmp_path_factory):
    """(work folder, CompletedProcess): one real, finished train_gan.py run TINY_RUN on the tiny dataset (2 epochs,
    evaluation on), with the bundled rawData/ beside it so the all-fruit recogniser learns from it as in a real
    run. Trained once for the tests that read what a run writes (the trainer's tree, the report notebook): a test
    that writes works on its own copy (tiny_run_copy)."""
    base = tmp_path_factory.mktemp("tinyrun")
    shutil.copytree(tiny_dataset_dir / "npzData", base / "npzData")
    (base / "rawData").symlink_to(ROOT / "rawData")
    r = run_script("train_gan.py", "--workdir", str(base), "--yes", "--dataset-version", TINY_VERSION,
                   "--model-name", TINY_RUN, *TINY_RUN_FLAGS, "--description", TINY_RUN_DESCRIPTION)
    assert r.returncode == 0, r.stderr
    return base, r


@pytest.fixture
def tiny_run_copy(tiny_run, tmp_path: Path) -> Path:
    """A fresh copy of tiny_run's work folder (its rawData/ link kept a link) for one test to write into."""
    shutil.copytree(tiny_run[0], tmp_path / "run", symlinks=True)
    return tmp_path / "run"


@pytest.fixture
def tiny_workdir(tiny_dataset_dir: Path, tmp_path: Path) -> Path:
    """A fresh copy of the tiny dataset work folder (npzData only) for one test to write models into."""
    shutil.copytree(tiny_dataset_dir / "npzData", tmp_path / "npzData")
    return tmp_path

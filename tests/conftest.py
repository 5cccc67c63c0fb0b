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

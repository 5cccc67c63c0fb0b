"""The student-facing README stays short and true to the repository: its commands, files and links exist."""
import re

from conftest import ROOT

README = (ROOT / "README.md").read_text(encoding="utf-8")


def test_readme_is_short_and_starts_with_the_two_commands():
    assert len(README.splitlines()) <= 200
    block = README.split("```bash", 1)[1].split("```", 1)[0]
    commands = [line.split("#")[0].strip() for line in block.strip().splitlines()]
    assert commands == ["pip install -r requirements.txt && python run_pipeline.py", "python -m pytest -q tests"]
    ci = (ROOT / ".ci" / "run").read_text()
    assert "python -m pytest -q tests" in ci            # CI runs the README's test command


def test_every_file_the_readme_names_exists():
    named = set(re.findall(r"`((?:docs|benchmarks|tests|rawData)/[\w./-]+|[\w-]+\.(?:py|ipynb|md|json))`", README))
    named |= set(re.findall(r"\]\((docs/[\w./-]+)\)", README))
    assert {"docs/quality.md", "docs/performance.md", "docs/reliability.md", "report.ipynb"} <= named
    missing = [n for n in sorted(named) if not (ROOT / n).exists() and not n.startswith(("generator_", "training_"))
               and "<" not in n]
    assert not missing, missing


def test_readme_has_no_lab_notebook_in_it():
    assert not re.search(r"\b[0-9a-f]{7,40}\b", README)     # no commit hashes
    assert "measured 20" not in README                      # dated measurements live in docs/

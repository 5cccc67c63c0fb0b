"""The trainer's shape: the loop imports few project modules (its parts are built in fruitgan/learn/parts.py and
get values, never the trainer), and the training modules stay one job each, within the house limits."""
import ast

import pytest

from conftest import ROOT

MAX_TRAINER_IMPORTS = 8
MAX_MODULE_LINES = 600
MAX_FUNCTION_LINES = 60
TOP = {p.stem for p in ROOT.glob("*.py")}
CHECKED = ["gan_trainer.py", "cost_analysis_training.py", *(f"fruitgan/learn/{m}.py" for m in (
    "records", "estimate", "run_control", "grouped", "stacked", "batches", "plots", "parts", "pricing", "memory",
    "cost_report"))]


def project_modules(path) -> set:
    """The project modules a file imports anywhere in it (top-level scripts and fruitgan.*)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            # "from package import module" imports that module; "from module import name" the module itself
            names = [f"{node.module}.{a.name}" if (ROOT / node.module.replace(".", "/") / f"{a.name}.py").exists()
                     else node.module for a in node.names]
        else:
            continue
        found |= {n for n in names if n.split(".")[0] in TOP or n.startswith("fruitgan.")}
    return found


def test_the_trainer_imports_at_most_eight_project_modules():
    imported = project_modules(ROOT / "gan_trainer.py")
    assert len(imported) <= MAX_TRAINER_IMPORTS, sorted(imported)
    assert "fruitgan.learn.parts" in imported            # the count sees "from package import module"


def test_no_part_is_handed_the_trainer():
    """RunRecords, RunEstimate and the other parts are built from values: no function in fruitgan/learn/ takes
    a trainer, and none reads one's attributes."""
    for path in (ROOT / "fruitgan" / "learn").glob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        args = {a.arg for n in ast.walk(tree) if isinstance(n, ast.arguments) for a in n.args + n.kwonlyargs}
        reads = {n.value.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)
                 and isinstance(n.value, ast.Attribute) and n.value.attr == "t"}
        assert "trainer" not in args and not reads, path.name


@pytest.mark.parametrize("name", CHECKED)
def test_modules_and_functions_stay_within_the_limits(name):
    text = (ROOT / name).read_text(encoding="utf-8")
    assert len(text.splitlines()) <= MAX_MODULE_LINES
    long = [f"{n.name} ({n.end_lineno - n.lineno + 1} lines)" for n in ast.walk(ast.parse(text))
            if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef))
            and n.end_lineno - n.lineno + 1 > MAX_FUNCTION_LINES]
    assert not long, long


def test_one_progress_class_only():
    files = [p for p in ROOT.glob("*.py")] + list((ROOT / "fruitgan").rglob("*.py"))
    classes = [n.name for p in files for n in ast.walk(ast.parse(p.read_text(encoding="utf-8")))
               if isinstance(n, ast.ClassDef)]
    assert classes.count("FruitProgress") <= 1 and "Console" in classes

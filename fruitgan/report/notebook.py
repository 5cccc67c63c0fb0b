"""report.ipynb's cells, read from report.md beside this module, and running them. report.md is the notebook as
Markdown: each ```python block is a code cell (a few lines calling this package), the text between blocks
Markdown cells, split where a line reads ``<!-- cell -->``."""
from __future__ import annotations

import os
import re
from pathlib import Path
from typing import List, Optional, Tuple

SOURCE = Path(__file__).with_name("report.md")
CELL_BREAK = "<!-- cell -->"
CODE = re.compile(r"^```python\n(.*?)^```\n", re.DOTALL | re.MULTILINE)
RUN_VARIABLES = ("FRUITGAN_REPORT_RUN", "FRUITGAN_REPORT_HELDOUT_RUN")   # the runs the set-up cell reads
EXECUTE_TIMEOUT_S = 600               # per cell


def cell_sources(text: str) -> List[Tuple[str, str]]:
    """[("markdown" or "code", source)] in order."""
    cells, at = [], 0
    for m in CODE.finditer(text):
        cells += [("markdown", part) for part in text[at:m.start()].split(CELL_BREAK)]
        cells.append(("code", m.group(1)))
        at = m.end()
    cells += [("markdown", part) for part in text[at:].split(CELL_BREAK)]
    return [(kind, src.strip("\n")) for kind, src in cells if src.strip()]


def build():
    import nbformat

    nb = nbformat.v4.new_notebook()
    make = {"markdown": nbformat.v4.new_markdown_cell, "code": nbformat.v4.new_code_cell}
    nb.cells = [make[kind](src) for kind, src in cell_sources(SOURCE.read_text(encoding="utf-8"))]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def execute(nb, folder: Path, run: Optional[Path] = None, heldout: Optional[Path] = None,
            timeout: int = EXECUTE_TIMEOUT_S):
    """Run every cell in ``folder`` against the runs given (else the set-up cell's defaults); a cell error raises."""
    from nbclient import NotebookClient

    given = {key: str(Path(path).resolve()) for key, path in zip(RUN_VARIABLES, (run, heldout)) if path is not None}
    NotebookClient(nb, timeout=timeout, kernel_name="python3",
                   resources={"metadata": {"path": str(folder)}}).execute(env={**os.environ, **given})
    return nb

"""The report's labels are the assignment's: its numbered items, in its own words, checked against its text."""
import re

from conftest import ROOT

from fruitgan.report import steps

SPEC = ROOT.parent / "shared" / "assignment" / "project6-spec.md"   # the assignment, where the checkout has it
SECTION = re.compile(r"^## (\d)\. (.+)$")
ITEM = re.compile(r"^(\d+)\. (.+)$")


def spec_items(text):
    """[(label, words)] of the spec's "Requirements": its sections 1-4 and their numbered items."""
    body = text.split("# Requirements", 1)[1].split("# **Project Pipeline**", 1)[0]
    items, section = [], None
    for line in body.splitlines():
        if m := SECTION.match(line.strip()):
            section = m.group(1)
        elif section and (m := ITEM.match(line.strip())):
            items.append((f"{section}.{m.group(1)}", m.group(2)))
    return items


def test_the_steps_are_the_assignments_in_its_words():
    labels = [label for label, _ in steps.items()]
    assert labels == [f"{s}.{i}" for s, n in ((1, 8), (2, 8), (3, 5), (4, 5)) for i in range(1, n + 1)]
    assert steps.heading("4.2") == "4.2 Use the noised input of the Generator and trick it as real data."
    if SPEC.is_file():                       # the checkout holds the assignment: the words must be its words
        text = SPEC.read_text(encoding="utf-8")
        assert steps.items() == spec_items(text)
        assert all(f"- {section}" in text for section in steps.SECTIONS)


def test_spec_parser_reads_a_changed_item():
    """The comparison above could fail: a reworded item in the spec text is seen."""
    text = ("# Requirements\n## 1. Build a simple Generator network.\n1. Initialise it.\n2. Add an input layer.\n"
            "# **Project Pipeline**\n## 1. Locally download the data.\n1. Not a step.\n")
    assert spec_items(text) == [("1.1", "Initialise it."), ("1.2", "Add an input layer.")]
    assert spec_items(text)[0] != steps.items()[0]

"""The assignment's numbered steps in its own words (project6-spec.md, "Requirements"), and its four sections;
tests/test_report_steps.py checks them against the spec's text."""
from __future__ import annotations

from typing import List, Tuple

_NETWORK_STEPS = ("Initialize the neural network.", "Add an input layer.", "Activate the layer with LeakyReLU.",
                  "Apply batch normalization.", "Add a second layer.", "Add a third layer.", "Add an output layer.")

# {step: (title, items)}: the spec's sections 1-4 and their numbered items, word for word.
STEPS = {
    1: ("Build a simple Generator network.", _NETWORK_STEPS + ("Compile the Generator network.",)),
    2: ("Build a simple Discriminator network.", _NETWORK_STEPS + ("Compile the Discriminator network.",)),
    3: ("Build a GAN by stacking the generator and discriminator.", (
        "Plot the images created by the Generator from a normally distributed noise input.",
        "Generate a normally distributed noise of shape 100x100.", "Generate images for the input noise.",
        "Reshape images if needed.", "Plot.")),
    4: ("Training", (
        "Train the GAN using the training set, default epoch, and default batch size.",
        "Use the noised input of the Generator and trick it as real data.",
        "Train the GAN for at least 400 epochs.",
        "Print the images generated at several epoch milestones (e.g., epoch 1, epoch 30, epoch 100, epoch 400).",
        "Summarize the model, quantify its performance, and explain to what extent it is capable of generating "
        "fake images that look like the real ones.")),
}
SECTIONS = ("a) Problem statement", "b) Algorithm of the solution", "c) Analysis of the findings", "d) References")


def items() -> List[Tuple[str, str]]:
    """[("1.1", "Initialize the neural network."), ...]: every numbered item, in the spec's order."""
    return [(f"{step}.{i}", words) for step, (_, its) in STEPS.items() for i, words in enumerate(its, start=1)]


def heading(label: str) -> str:
    """'1.1 Initialize the neural network.': an item's label followed by its own words."""
    return f"{label} {dict(items())[label]}"


def title(step: int) -> str:
    """'Step 1. Build a simple Generator network.'"""
    return f"Step {step}. {STEPS[step][0]}"

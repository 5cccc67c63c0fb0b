"""Build report.ipynb from its cells, and optionally execute it against a training run.

    python make_report.py                         # rebuild report.ipynb (no outputs)
    python make_report.py --execute               # ... and run it against report_assets/ (the committed run)
    python make_report.py --collect models/model_report --execute   # copy a run's small artefacts first
    python make_report.py --collect-heldout models/model_heldout --execute   # the held-out run (+1 generator)
    python make_report.py --collect models/model_x --execute --out /tmp/x/report.ipynb   # a copy elsewhere:
        the artefacts go to /tmp/x/report_assets/model_report (the committed report_assets/ is left alone)

The notebook reads the run from $FRUITGAN_REPORT_RUN (default: report_assets/model_report, the small
artefacts of the real 400-epoch run: histories, metrics, milestone images; never the weights) and the held-out
run from $FRUITGAN_REPORT_HELDOUT_RUN (default: report_assets/model_heldout, the same plus one generator).

What the notebook promises its reader (tests/test_report_notebook.py checks it):
* the assignment's steps carry their own labels, 1.1-1.8, 2.1-2.8, 3.1-3.5 and 4.1-4.5, each once and in order
  (the first line of a cell: a markdown heading or the code cell's first comment); extra sections carry none;
* every number in its prose is computed by a cell from the runs' files; the one exception is the author's
  reading of the committed runs' pictures, labelled as such and shown only when the notebook reads those runs;
* held-out figures come from the test part, with their 95% interval; a run from before the split says so.
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from fruitgan.util.user_io import UserError, run_main

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "report.ipynb"
ASSETS = HERE / "report_assets" / "model_report"
HELDOUT_ASSETS = HERE / "report_assets" / "model_heldout"    # the run measured on held-out drawings
REPORT_EPOCHS = (1, 30, 100, 400)     # the milestone grids the report shows (the assignment's 4.2)
EXECUTE_TIMEOUT_S = 600               # per cell
SMALL_SUFFIXES = (".json", ".txt")    # info/ files --collect copies (the weights stay out of the repository)
REAL_VS_FAKE = "Real-vs-fake figure"  # the first words of the cells that draw real drawings beside the fakes


def md(text: str):
    import nbformat

    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str):
    import nbformat

    return nbformat.v4.new_code_cell(text.strip("\n"))


# The author's reading of the committed runs' epoch-400 grids (report_assets/*/generated_epoch_images_*/
# epoch_0400.png), looked at beside real drawings of the sample. A person's judgement, not a measurement: the
# notebook shows it only when it reads the run it was written for (model name, dataset version, creation time).
AUTHOR_READING_CELL = r'''
# The author's reading of the committed runs' pictures: a person's judgement, not a measurement.
# Written from the epoch-400 grids beside real drawings. It is shown only for the run it describes.
AUTHOR_READING = {
    ("report64", "r64", "2026-12-01T20:16:28+00:00"): {
        "apple": ("looks real", "Round outlines with a stem, often a leaf. At a glance they pass for real doodles."),
        "pear": ("looks real", "Pear outlines, narrow at the top, with a stem. They pass for real doodles."),
        "banana": ("looks real", "Most are clean crescents. A few are broken or twisted strokes."),
        "strawberry": ("partly real", "The outline is right: a rounded heart with leaves on top. "
                                      "The insides are smeared, and the seeds are blots."),
        "watermelon": ("partly real", "Half-slices with a rind line, like the real ones. "
                                      "Stripes and seeds are rough hatching."),
        "grapes": ("does not look real", "Tangled loops and scribbles. Few show separate round grapes on a stem."),
        "blackberry": ("does not look real", "White blobs and broken fragments. None reads as a blackberry."),
    },
    ("heldout", "heldout", "2026-12-04T09:52:48+00:00"): {
        "apple": ("partly real", "Round outlines with a stem, like the real ones. They are lumpier and wobblier, "
                                 "and the stems are often smudged: side by side, most are easy to pick out."),
        "banana": ("partly real", "Most are clean crescents. About one in eight is a blob, a broken stroke or "
                                  "a hook."),
    },
}

def author_reading(cfg):
    """The reading written for this run ({fruit: (verdict, what a person sees)}), or None for any other run."""
    return AUTHOR_READING.get((cfg.get("model_name"), cfg.get("dataset_version"), cfg.get("created")))

READING = author_reading(config)
HELD_READING = author_reading(held.read_config()) if held is not None else None
print("author's reading of this run's pictures:", "included" if READING else "none (look at the grids in 4.2)")
'''


def cells() -> List:
    """The report, in the order the assignment asks for."""
    return [
        md(r"""
# Fake fruit from real doodles: one DCGAN per fruit on Quick, Draw!

*QuickDraw Fruit GAN: technical report.* It builds the assignment's two networks step by step. Then it reads
two real training runs of the project's own scripts. Every figure about the runs is computed by a cell from
their files. The one exception is marked: the author's reading of the pictures.

**Reading it in 15 minutes:** skim a) and b), run your eye down steps 1 to 3, look hard at the pictures in
4.2, then read c), the analysis."""),
        md(r"""
### Words used in this report

| word | meaning |
| --- | --- |
| GAN | *generative adversarial network*: two networks trained against each other |
| generator (G) | turns random numbers into a drawing: the fake |
| discriminator (D) | gets a drawing and says how likely it is real |
| DCGAN | a GAN built from convolution layers (small filters slid over the image) |
| noise vector (z) | the generator's input: 100 random numbers; each vector gives one drawing |
| epoch | one pass over a fruit's training drawings |
| seed | the number that fixes the random choices: the same seed gives the same run |
| milestone | an epoch where the run saves a grid of fakes and measures their quality |
| checkpoint | the weights saved at an epoch; the *best checkpoint* is the milestone with the best quality score |
| D(x), D(G(z)) | D's probability "real" for real drawings x, and for fakes G(z) |
| BCE | *binary cross-entropy*: the loss for yes/no answers; small when the right answer gets a high probability |
| Adam | the optimizer: the rule that nudges every weight after each batch of images, to lower the loss |
| moving average | the saved generator is an average of its recent weights: steadier drawings than the last step's |
| augmented copy | a real drawing slightly rotated, scaled and shifted, used as an extra training image |
| held-out drawings | real drawings kept out of training. A *validation part* picks the best checkpoint; the *test part* gives the reported figure |
| two-sample accuracy | how often a small network tells fakes from held-out real drawings: 0.5 = it cannot, 1.0 = always |
| 95% interval | the range the true figure lies in, with 95% confidence; written `0.68 [0.63, 0.72]` |
| standard error | the typical size of a figure's error from chance alone (a small sample has a large one) |
| memorisation ratio | distance from fakes to their nearest training drawing, over the same for new real drawings; about 1 is healthy, well below 1 means copying |
| recogniser | a classifier trained on real drawings of all seven fruits; it must name one fruit and cannot say "none of these" |
| recognised | the share of fakes the recogniser gives to the intended fruit |
| FID | *Fréchet distance*: how far the fakes' features are from the real drawings' features (0 = alike); features come from a small classifier |
| recall, coverage | the share of real drawings with a fake nearby; low values mean the generator draws only a few kinds |"""),
        md(r"""
## a) Problem statement

Images made by generative models circulate next to real photographs, and people judge them in a glance.
Students who build such a generator learn where fakes come from, what they cost, and how to measure their
flaws. This project is the smallest complete example. Real doodles of seven fruits from Google's
*Quick, Draw!* dataset become images. One DCGAN per fruit learns to draw new ones. The report then asks:
*how far do the fakes look like the real drawings?* It answers with pictures, with measurements, and by
saying which of the two to trust when they disagree."""),
        md(r"""
## b) Algorithm of the solution

**Pipeline.** `rawDataToImage.py` renders the doodles as white strokes on black. It keeps some real drawings
aside (held out) and can add augmented copies. `imageToNPZ.py` packs each fruit's images into one file.
`train_gan.py` trains one GAN per fruit and writes `models/model_<name>/`. `generate_images.py` draws new
fruit from it.

**Generator** (noise z of 100 values → image of R × R pixels, S = R/4, C channels): fully connected layer to
C·S·S values, LeakyReLU, batch normalization, reshape to C maps of S × S. Then two upsampling layers of 3×3
convolutions, and a last convolution with **tanh**, so pixels lie in [-1, 1].

**Discriminator** (image → one number, the *logit*; sigmoid(logit) = probability "real"): three 3×3
convolutions with stride 2, each halving the image, with LeakyReLU, dropout and batch normalization. Then one
linear unit.

**Losses.** Both use binary cross-entropy (BCE) and the Adam optimizer (its settings are printed in 1.8).
D learns to call real drawings real and fakes fake. G trains through the *stacked* model, G then D,
with its fakes labelled **real**. So G is pushed toward whatever D currently believes is real.

**Training loop** (per fruit; fruits are stepped together, with the same arithmetic per fruit):
```
for epoch in 1..E:
    for each batch x of real images:
        z <- normal noise (B, 100);  fake <- G(z)
        D step: minimise ½[BCE(D(x), 1) + BCE(D(fake), 0)]      # record D(x), D(G(z))
        G step: minimise BCE(D(fake), 1)                          # the stacked model, fakes labelled real
    at milestones: save G(fixed noise) as a grid; measure quality; keep the best checkpoint
    save a checkpoint (weights, optimizers, random states, history, cost)
```"""),
        code(r"""
# Set-up: the project's modules, and the two runs this report reads.
import atexit, collections, math, os, shutil, subprocess, sys, tempfile
from pathlib import Path

%matplotlib inline
import matplotlib.pyplot as plt
import numpy as np
import torch
import torch.nn as nn
from IPython.display import Markdown, display
from PIL import Image

ROOT = Path.cwd()
sys.path.insert(0, str(ROOT))
import gan_model, gan_trainer
from fruitgan.metrics import evaluation as gan_evaluation
from fruitgan.models import store as model_store
from fruitgan.util import pictures
from fruitgan.util import settings
from gan_model import GANConfig, Generator, Discriminator, compile_gan

# The run of steps 4.x (default: the committed 64 px run), read through the module that writes its files.
RUN = Path(os.environ.get("FRUITGAN_REPORT_RUN", ROOT / "report_assets" / "model_report"))
run = model_store.ModelFolder.at(RUN)
config, summary = run.read_config(), run.read_summary()
FRUITS, RES = config["fruits"], config["resolution"]
histories = {f: run.read_history(f) for f in FRUITS}
# The held-out run (default: apple and banana on Google's 28 px bitmaps, with drawings kept out of training).
HELDOUT_RUN = Path(os.environ.get("FRUITGAN_REPORT_HELDOUT_RUN", ROOT / "report_assets" / "model_heldout"))
held = model_store.ModelFolder.at(HELDOUT_RUN) if HELDOUT_RUN.is_dir() else None
torch.manual_seed(0)
print(f"run: {RUN.name} | model {config['model_name']} | dataset version {config['dataset_version']} | "
      f"{RES} px | {len(FRUITS)} fruits | {summary['epochs_done']} of {summary['epochs_planned']} epochs | "
      f"device {summary.get('device')}")
print(f"held-out run: {held.name + ' at ' + HELDOUT_RUN.name if held else 'none at ' + str(HELDOUT_RUN)}")
"""),
        code(r"""
# Helpers the cells below share: number formats, a model summary, and a run's figures as the tools report them.
def number(v):
    return isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)

def fmt(v, spec):                  # a figure, or "-" where it was not measured
    return format(v, spec) if number(v) else "-"

def span(values, spec):            # "0.16-0.26": the range of the measured values
    vals = [v for v in values if number(v)]
    if not vals:
        return "not measured"
    lo, hi = format(min(vals), spec), format(max(vals), spec)
    return lo if lo == hi else f"{lo}-{hi}"

def names(fruits):
    fruits = list(fruits)
    return ", ".join(fruits) if fruits else "none"

def interval(q, prefix=""):        # "0.68 [0.63, 0.72]": a two-sample accuracy with its 95% interval
    acc, lo, hi = (q.get(prefix + k) for k in ("two_sample_accuracy", "two_sample_low", "two_sample_high"))
    if not number(acc):
        return None
    return f"{acc:.2f} [{lo:.2f}, {hi:.2f}]" if number(lo) and number(hi) else f"{acc:.2f}"

def show_gray(fig):
    # A grey-only figure shown as an 8-bit grey PNG: the same picture in a third of the bytes of an RGBA one.
    import io
    from IPython.display import Image as PNG
    raw, png = io.BytesIO(), io.BytesIO()
    fig.savefig(raw, format="png", bbox_inches="tight")
    plt.close(fig)
    Image.open(raw).convert("L").save(png, format="PNG", optimize=True)
    display(PNG(data=png.getvalue()))

def layer_table(model, example):
    # Each layer's output shape and parameter count (a Keras-style model summary).
    rows, hooks = [], []
    for name, module in model.named_modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(
                lambda m, i, o, name=name: rows.append((name, type(m).__name__, tuple(o.shape),
                                                        sum(p.numel() for p in m.parameters())))))
    model.eval()
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    print(f"{'layer':<12}{'type':<14}{'output shape':<22}{'parameters':>12}")
    for name, kind, shape, params in rows:
        print(f"{name:<12}{kind:<14}{str(shape):<22}{params:>12,}")
    total = sum(p.numel() for p in model.parameters())
    print(f"total parameters: {total:,}")
    return total

WORKDIRS = {}

def tool_workdir(folder):
    # A work folder whose models/ holds this run, as generate_images.py and model_store.describe_model read it:
    # the run's own when it lives in models/, else a temporary copy of its info/ records (no weights).
    in_models = folder.path.parent.name == model_store.MODELS_DIR
    if in_models and folder.path.name == model_store.model_folder_name(folder.name):
        return folder.path.parent.parent
    if folder.path not in WORKDIRS:
        tmp = Path(tempfile.mkdtemp(prefix="report_"))
        atexit.register(shutil.rmtree, tmp, True)
        shutil.copytree(folder.info_dir, model_store.ModelFolder.in_workdir(tmp, folder.name).info_dir)
        WORKDIRS[folder.path] = tmp
    return WORKDIRS[folder.path]

def reported(folder):
    # {fruit: (figures as reported, the entry they come from)}: the best checkpoint's figures, held-out tests
    # from the test part (model_store.reported_figures, as the model table and generate_images.py show them).
    entries = folder.quality()
    return {f: (model_store.reported_figures(e), e) for f, e in entries.items()}

def heldout_kind(history, entry):
    # Which held-out figure a fruit has. "test": the best checkpoint measured once on the test part.
    # "pending": validation figures only (the run has not ended). "old": a run from before the split, whose
    # milestones were all measured on the same held-out drawings. "none": no split (too few real drawings).
    if entry.get("test"):
        return "test"
    quality = history.get("quality") or []
    if any(number(q.get("val_two_sample_accuracy")) for q in quality):
        return "pending"
    if any(number(q.get("two_sample_accuracy")) for q in quality):
        return "old"
    return "none"

REPORTED = reported(run)
"""),
        md(r"""
## Step 1: build the Generator (1.1–1.8)

Each step adds one part and shows the shape of what it makes, for a batch of 4 noise vectors. Shapes read
(batch, channels, height, width). Step 1.7 checks that the project's `gan_model.Generator` holds exactly
these layers."""),
        code(r"""
# 1.1 Input layer: fully connected, from 100-dim normal noise to C*S*S values.
cfg = GANConfig.from_dict(config.get("gan_config") or {"resolution": RES})   # the run's networks, size R
S, C, NZ = cfg.start_size, cfg.g_channels, cfg.noise_dim          # S = R/4: the side of the first maps
z = torch.randn(4, NZ)                   # 4 noise vectors of 100 normal values (mean 0, spread 1)
fc = nn.Linear(NZ, C * S * S)            # every output value is a weighted sum of all 100 inputs
h = fc(z)
print(f"R = {RES}, S = {S}, C = {C}: noise {tuple(z.shape)} -> input layer {tuple(h.shape)}")
"""),
        code(r"""
# 1.2 LeakyReLU(0.2): negative values are multiplied by 0.2 instead of set to 0, so no unit stops learning.
act = nn.LeakyReLU(cfg.leaky_slope)
h = act(h)
print(f"share of values that are negative, kept at 0.2 times their size: {(h < 0).float().mean():.2f}")
"""),
        code(r"""
# 1.3 Batch normalization: reshape to C maps of S x S, then scale each map to mean 0 and spread 1.
bn = nn.BatchNorm2d(C)                   # it keeps training steadier: no layer's output drifts in size
h = bn(h.view(-1, C, S, S))
print(f"reshaped and normalised: {tuple(h.shape)}, mean {h.mean():.2f}, spread {h.std():.2f}")
"""),
        code(r"""
# 1.4 Second layer: upsampling convolutions. Double the size, then two 3x3 convolutions (C -> C -> C/2).
# Each convolution is followed by batch normalization and LeakyReLU (no bias: the normalization cancels it).
second = nn.Sequential(nn.Upsample(scale_factor=2),
                       nn.Conv2d(C, C, 3, padding=1, bias=False), nn.BatchNorm2d(C), nn.LeakyReLU(cfg.leaky_slope),
                       nn.Conv2d(C, C // 2, 3, padding=1, bias=False), nn.BatchNorm2d(C // 2),
                       nn.LeakyReLU(cfg.leaky_slope))
h = second(h)
print("after the second layer:", tuple(h.shape))
"""),
        code(r"""
# 1.5 Third layer: double the size again, to R x R, then one 3x3 convolution with BN and LeakyReLU.
third = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(C // 2, C // 2, 3, padding=1, bias=False),
                      nn.BatchNorm2d(C // 2), nn.LeakyReLU(cfg.leaky_slope))
h = third(h)
print("after the third layer:", tuple(h.shape))
"""),
        code(r"""
# 1.6 Output layer with tanh: one grey channel; tanh keeps every pixel in [-1, 1], like the training images.
out_conv = nn.Conv2d(C // 2, 1, 3, padding=1)
out = torch.tanh(out_conv(h))
print("output:", tuple(out.shape), f"pixel range [{out.min():.2f}, {out.max():.2f}]")
"""),
        code(r"""
# 1.7 Model summary and parameter count: the project's Generator (gan_model.py) holds exactly these layers.
generator = Generator(cfg)
g_params = layer_table(generator, z)
by_hand = sum(p.numel() for m in (fc, bn, second, third, out_conv) for p in m.parameters())
print(f"parameters of the layers built by hand in 1.1-1.6: {by_hand:,} (the same count: {by_hand == g_params})")
"""),
        code(r"""
# 1.8 Compile: attach the Adam optimizer and the BCE loss, as gan_model.compile_gan does.
gan = compile_gan(cfg)                   # both networks, each with its own Adam optimizer, and one loss
g_opt = gan.g_optimizer
print(f"generator optimizer: {type(g_opt).__name__}, learning rate {g_opt.defaults['lr']}, "
      f"betas {g_opt.defaults['betas']}")
print(f"loss: {type(gan.loss_fn).__name__}: binary cross-entropy on the logit (it applies the sigmoid itself)")
"""),
        md(r"""
## Step 2: build the Discriminator (2.1–2.8)

The discriminator reads an image and gives one number. It starts from the untrained generator's 4 images of
step 1.6 (any images of the right size would do)."""),
        code(r"""
# 2.1 Input convolution: 3x3 with stride 2 (it moves 2 pixels at a time), so the image halves; 1 -> D channels.
x = out.detach()
D_CH = cfg.d_channels
conv1 = nn.Conv2d(1, D_CH, 3, stride=2, padding=1)
h = conv1(x)
print("after the input convolution:", tuple(h.shape))
"""),
        code(r"""
# 2.2 LeakyReLU(0.2), then Dropout2d(0.25): in training, dropout switches off whole maps at random.
# So D cannot lean on a few features of the few real drawings it sees.
drop = nn.Dropout2d(cfg.dropout)
h = drop(nn.LeakyReLU(cfg.leaky_slope)(h))
print(f"after LeakyReLU and dropout: {tuple(h.shape)}, share of values switched off {(h == 0).float().mean():.2f}")
"""),
        code(r"""
# 2.3 Batch normalization: on the second and third layers (not on the input layer, as in DCGAN).
# It scales each map of a convolution's output to mean 0 and spread 1.
conv2, bn2 = nn.Conv2d(D_CH, 2 * D_CH, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * D_CH)
raw = conv2(h)
normed = bn2(raw)
print(f"second convolution's maps: mean spread {raw.std(dim=(0, 2, 3)).mean():.3f} before, "
      f"{normed.std(dim=(0, 2, 3)).mean():.3f} after batch normalization")
"""),
        code(r"""
# 2.4 Second layer: the convolution and batch normalization of 2.3 (D -> 2D, stride 2), LeakyReLU, dropout.
h = nn.Dropout2d(cfg.dropout)(nn.LeakyReLU(cfg.leaky_slope)(normed))
print("after the second layer:", tuple(h.shape))
"""),
        code(r"""
# 2.5 Third layer: a 3x3 convolution 2D -> 4D with stride 2, batch normalization, LeakyReLU, dropout.
third_d = nn.Sequential(nn.Conv2d(2 * D_CH, 4 * D_CH, 3, stride=2, padding=1, bias=False),
                        nn.BatchNorm2d(4 * D_CH), nn.LeakyReLU(cfg.leaky_slope), nn.Dropout2d(cfg.dropout))
h = third_d(h)
print("after the third layer:", tuple(h.shape))
"""),
        code(r"""
# 2.6 Output layer, one logit: flatten the maps, one linear unit per image. sigmoid(logit) = P(real).
head = nn.Linear(h[0].numel(), 1)
logit = head(h.flatten(1))
print("logits:", tuple(logit.shape), "P(real):", torch.sigmoid(logit).squeeze(1).detach().numpy().round(3))
"""),
        code(r"""
# 2.7 Model summary and parameter count: the project's Discriminator holds exactly these layers.
discriminator = Discriminator(cfg)
d_params = layer_table(discriminator, x)
by_hand = sum(p.numel() for m in (conv1, conv2, bn2, third_d, head) for p in m.parameters())
print(f"parameters of the layers built by hand in 2.1-2.6: {by_hand:,} (the same count: {by_hand == d_params})")
"""),
        code(r"""
# 2.8 Compile: compile_gan (1.8) attached an Adam optimizer and the same BCE loss to the discriminator too.
d_opt = gan.d_optimizer
print(f"discriminator optimizer: {type(d_opt).__name__}, learning rate {d_opt.defaults['lr']}, "
      f"betas {d_opt.defaults['betas']}")
with torch.no_grad():
    logits = gan.discriminator.eval()(x)
    d_loss = 0.5 * (gan.loss_fn(logits, torch.ones_like(logits)) + gan.loss_fn(logits, torch.zeros_like(logits)))
print(f"untrained D's loss on these images, as real and as fake: {d_loss:.3f} (ln 2 = {math.log(2):.3f}: a coin flip)")
"""),
        md(r"""
## The stacked GAN

The generator is trained through a *stacked* model: G then D, in one network. Its fakes go in labelled
**real**, and only G's weights are updated. So G learns what makes D say "real"."""),
        code(r"""
# The stacked model: G then D. compile_gan built it from the two networks above.
stacked = gan.stacked
with torch.no_grad():
    stacked_logits = stacked.eval()(z)
    g_loss = gan.loss_fn(stacked_logits, torch.ones_like(stacked_logits))
print(f"stacked output for 4 noise vectors: {tuple(stacked_logits.shape)}; "
      f"G's loss with fakes labelled real: {g_loss:.3f}")
print(f"parameters: generator {g_params:,}, discriminator {d_params:,}, GAN {g_params + d_params:,}")
"""),
        md(r"""
## Step 3: noise in, images out (3.1–3.5)"""),
        code(r"""
# 3.1 Normally distributed noise of shape 100 x 100: 100 noise vectors of 100 values each.
noise = torch.randn(100, 100, generator=torch.Generator().manual_seed(0))
print(f"noise: {tuple(noise.shape)}, mean {noise.mean():.3f}, spread {noise.std():.3f}")
"""),
        code(r"""
# 3.2 Images generated from it: by the untrained generator of 1.8, and by a trained one.
images = gan_model.generate(gan.generator, noise)               # (100, 1, R, R), values in [-1, 1]
trained_fruit = next((f for f in (held.fruits() if held else []) if held.generator_path(f).is_file()), None)
trained_images = None
if trained_fruit:                         # the held-out run's final weights (its moving average)
    trained, used_ema = held.read_generator(trained_fruit)
    T_RES = trained.config.resolution
    trained_images = gan_model.generate(trained, noise)
    print(f"trained: the {trained_fruit} generator of run '{held.name}', {T_RES} px "
          f"({'moving-average weights' if used_ema else 'weights'}): {tuple(trained_images.shape)}")
else:
    print(f"no trained generator weights in {HELDOUT_RUN}: only the untrained images")
print(f"untrained: {tuple(images.shape)}")
"""),
        code(r"""
# 3.3 Reshaped for plotting: (100, 1, R, R) in [-1, 1] -> 100 pictures of R x R in [0, 1].
pics = ((images + 1) / 2).reshape(100, RES, RES).numpy()
lo, hi = pics.min(axis=(1, 2), keepdims=True), pics.max(axis=(1, 2), keepdims=True)
stretched = (pics - lo) / np.maximum(hi - lo, 1e-12)  # each picture: its darkest pixel black, its brightest white
t_pics = None if trained_images is None else ((trained_images + 1) / 2).reshape(100, T_RES, T_RES).numpy()
print("pictures:", pics.shape, "" if t_pics is None else f"and {t_pics.shape}")
"""),
        code(r"""
# 3.4 Plotted as a 10 x 10 grid: the untrained images (contrast stretched), and the trained ones (as drawn).
def grid10(p):                            # the project's grid of the milestone images: grey gutters, 10 per row
    return np.asarray(pictures.image_grid((p * 255).round().astype(np.uint8), 10, gan_trainer.GRID_PAD,
                                          gan_trainer.GRID_GUTTER))
panels = [(stretched, f"Untrained generator, {RES} px\n(each image's contrast stretched)")]
if t_pics is not None:
    panels.append((t_pics, f"Trained {trained_fruit} generator, {T_RES} px\n(same 100 noise vectors, not stretched)"))
fig, axes = plt.subplots(1, len(panels), figsize=(5.5 * len(panels), 5.9), squeeze=False)
for ax, (p, title) in zip(axes[0], panels):
    ax.imshow(grid10(p), cmap="gray", vmin=0, vmax=255)
    ax.set_title(title)
    ax.axis("off")
plt.tight_layout(); show_gray(fig)
"""),
        code(r"""
# 3.5 What the plot shows, measured on the pictures of 3.3.
def between(p):                          # how much a pixel changes from one noise vector to the next
    return float(p.std(axis=0).mean())

lines = [f"- **Untrained:** every pixel lies between {pics.min():.3f} and {pics.max():.3f} (0 = black, 1 = white). "
         "To the eye each picture is flat grey. Stretched, each shows a speckled texture, not a drawing: "
         "the layers exist, but nothing has been learnt yet.",
         f"- A pixel changes by {between(pics):.4f} on average from one noise vector to the next."]
if t_pics is not None:
    inked = float((t_pics > 0.5).mean())
    lines.append(f"- **Trained:** pixels span {t_pics.min():.2f} to {t_pics.max():.2f}; {inked:.0%} of them are "
                 f"brighter than mid-grey (the strokes). A pixel changes by {between(t_pics):.4f} between noise "
                 "vectors.")
    lines.append("- Each noise vector now gives its own drawing." if between(t_pics) > 10 * between(pics) else
                 "- This generator has barely trained: its pictures are still nearly flat.")
display(Markdown("\n".join(lines)))
"""),
        md(r"""
## Step 4: training and results (4.1–4.5)"""),
        md(r"""
### 4.1 The training run

The run was made with the project's own commands, printed below from its saved settings
(`info/training_config_<name>.json`). A setting it did not save is left at its default."""),
        code(r"""
# The commands that made a run, rebuilt from its saved settings.
RECIPE_FLAGS = (settings.G_CHANNELS, settings.D_CHANNELS, settings.BETA1, settings.BETA2, settings.DIFF_AUGMENT,
                settings.R1_GAMMA, settings.STEPS_PER_EPOCH, settings.SCHEDULE, settings.MILESTONES,
                settings.EVAL_SAMPLES, settings.KEEP_CHECKPOINT_EVERY)

def run_commands(cfg):
    ds, version = cfg.get("dataset", {}), cfg["dataset_version"]
    per_fruit, aug = ds.get("images", {}), [a for a in ds.get("augmentation", {}).values() if a]
    make = [f"--version {version}", f"--resolution {cfg['resolution']}", f"--fruits {','.join(cfg['fruits'])}"]
    if per_fruit:
        make.append(f"--count {max(per_fruit.values())}")
    if aug:
        make.append("--augment" if any(a.get("enabled") for a in aug) else "--no-augment")
    seeds = {(a.get("settings") or {}).get("seed") for a in aug if a.get("enabled")}
    if len(seeds) == 1 and None not in seeds:
        make.append(f"--seed {seeds.pop()}")
    presets = set((ds.get("quality") or {}).values())
    if len(presets) == 1:                # runs before this was saved used the default preset's flag-less form
        make.append(f"--quality {presets.pop()}")
    train = (f"python train_gan.py --yes --dataset-version {version} --model-name {cfg['model_name']} "
             f"--epochs {cfg['epochs']} --batch-size {cfg['batch_size']} --lr {cfg['lr']} --seed {cfg['seed']} "
             f"--precision {cfg.get('precision', 'fp32')}")   # the arithmetic it used (auto differs between machines)
    if cfg.get("ema_decay"):
        train += f" --ema-decay {cfg['ema_decay']}"
    for s in RECIPE_FLAGS:               # the recipe's other settings, where the run changed them
        value = cfg.get(s.field)
        if value is not None and (list(value) if isinstance(value, (list, tuple)) else value) != (
                list(s.default) if isinstance(s.default, (list, tuple)) else s.default):
            train += f" {s.flag} {','.join(map(str, value)) if isinstance(value, (list, tuple)) else value}"
    if cfg.get("evaluate") is False:
        train += " --no-eval"
    return [f"python rawDataToImage.py --yes {' '.join(make)}", f"python imageToNPZ.py --yes --version {version}",
            train]

def data_table(cfg, hist):
    ds = cfg.get("dataset", {})
    print(f"{'fruit':<12}{'real drawings':>14}{'augmented':>11}{'images':>8}{'trained on':>12}{'held out':>10}"
          f"{'validation':>12}{'test':>6}")
    for f in cfg["fruits"]:
        h = hist.get(f) or {}
        real, total = ds.get("real_images", {}).get(f), ds.get("images", {}).get(f)
        aug = total - real if number(real) and number(total) else None
        print(f"{f:<12}{fmt(real, 'd'):>14}{fmt(aug, 'd'):>11}{fmt(total, 'd'):>8}"
              f"{fmt(h.get('num_train_images', total), 'd'):>12}{fmt(h.get('num_heldout_real_images'), 'd'):>10}"
              f"{fmt(h.get('num_validation_images'), 'd'):>12}{fmt(h.get('num_test_images'), 'd'):>6}")

print("commands:")
for command in run_commands(config):
    print(f"  {command}")
print()
data_table(config, histories)
print("(validation and test: '-' for a run from before the split; held out 0: too few real drawings for a split)")
print()
print("description:", config.get("description") or "(none)")
"""),
        md(r"""
### 4.2 The images at epochs 1, 30, 100 and 400, real drawings beside

Each row is one fruit. On the left: 16 real drawings, rendered here from `rawData/` at the run's size by the
project's own renderer. Then the first 16 of the 64 fakes the run saved at each epoch shown. The fakes come
from the same fixed noise every time, so a cell shows one noise vector's drawing growing up. Look before you
read the numbers: do the fakes look like the real drawings beside them?"""),
        code(r"""
# Real-vs-fake figure: per fruit, 16 real drawings from rawData/, then 16 fakes at each epoch shown.
def real_drawings(resolution, count=16):
    # The first drawings of each fruit's rawData/ files, chosen as a dataset at this size would choose them.
    drawn, _ = gan_evaluation.render_rawdata_fruits(ROOT, resolution, formats={}, max_per_fruit=count)
    return drawn

def shown_epochs(folder, wanted=(1, 30, 100, 400)):
    available = folder.progress_grid_epochs()
    return list(dict.fromkeys(min(available, key=lambda a: abs(a - w)) for w in wanted)) if available else []

def real_vs_fake(folder, fruits, resolution, title):
    epochs, real = shown_epochs(folder), real_drawings(resolution)
    fig, axes = plt.subplots(len(fruits), 1 + len(epochs), figsize=(2.2 * (1 + len(epochs)), 2.3 * len(fruits)),
                             squeeze=False)
    for r, f in enumerate(fruits):
        if f in real:
            axes[r, 0].imshow(np.asarray(gan_trainer.image_grid(real[f][:16], side=4)), cmap="gray", vmin=0, vmax=255)
        else:
            axes[r, 0].text(0.5, 0.5, "no drawings\nin rawData/", ha="center", va="center")
        for c, e in enumerate(epochs, start=1):
            path = folder.progress_grid_path(f, e)
            if path.is_file():
                grid = np.asarray(Image.open(path))
                cell = grid.shape[1] // gan_trainer.GRID_SIDE
                axes[r, c].imshow(grid[: cell * 4, : cell * 4], cmap="gray", vmin=0, vmax=255)   # the first 4 x 4
        for c, label in enumerate(["real drawings"] + [f"epoch {e}" for e in epochs]):
            axes[r, c].set_xticks([]); axes[r, c].set_yticks([])
            if r == 0:
                axes[r, c].set_title(label)
        axes[r, 0].set_ylabel(f, fontsize=12)
    fig.suptitle(title)
    plt.tight_layout(rect=(0, 0, 1, 1 - 0.35 / fig.get_figheight())); show_gray(fig)
    return epochs

SHOWN = real_vs_fake(run, FRUITS, RES, f"Run '{run.name}', {RES} px: real drawings (left) beside the fakes")
"""),
        md(r"""
### 4.3 Loss curves

D's loss falls when it tells real from fake better. G's loss falls when its fakes fool D more often. In a
GAN neither settles at zero: each network's progress is the other's loss."""),
        code(r"""
# Each fruit's D and G loss at every epoch, from its training history.
def per_fruit_axes(n, **kw):
    cols = min(4, n)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(4 * cols, 3.3 * rows), squeeze=False, **kw)
    for ax in list(axes.flat)[n:]:
        ax.axis("off")
    return fig, axes.flat

fig, axes = per_fruit_axes(len(FRUITS), sharex=True)
for ax, f in zip(axes, FRUITS):
    ep = [e["epoch"] for e in histories[f]["epochs"]]
    ax.plot(ep, [e["d_loss"] for e in histories[f]["epochs"]], label="D loss")
    ax.plot(ep, [e["g_loss"] for e in histories[f]["epochs"]], label="G loss")
    ax.set_title(f); ax.set_xlabel("epoch")
axes[0].legend()
plt.tight_layout(); plt.show()
"""),
        md(r"""
### 4.4 D(x) and D(G(z))

D(x) is D's average probability "real" for real drawings; D(G(z)) the same for fakes. If D could not tell
them apart, both would sit at 0.5 (the grey line)."""),
        code(r"""
# D's verdicts at every epoch: D(x) on real drawings, D(G(z)) on fakes.
fig, axes = per_fruit_axes(len(FRUITS), sharex=True, sharey=True)
for ax, f in zip(axes, FRUITS):
    ep = [e["epoch"] for e in histories[f]["epochs"]]
    ax.plot(ep, [e["d_real"] for e in histories[f]["epochs"]], label="D(x)")
    ax.plot(ep, [e["d_fake"] for e in histories[f]["epochs"]], label="D(G(z))")
    ax.axhline(0.5, color="grey", lw=0.5); ax.set_title(f); ax.set_ylim(0, 1)
axes[0].legend()
plt.tight_layout(); plt.show()
TAIL = {f: histories[f]["epochs"][-20:] for f in FRUITS}
D_REAL = {f: float(np.mean([e["d_real"] for e in TAIL[f]])) for f in FRUITS}
D_FAKE = {f: float(np.mean([e["d_fake"] for e in TAIL[f]])) for f in FRUITS}
for f in FRUITS:
    print(f"{f:<12} last {len(TAIL[f])} epochs: mean D(x) {D_REAL[f]:.3f}, mean D(G(z)) {D_FAKE[f]:.3f}")
"""),
        md(r"""
### 4.5 The cost table and the quality figures

**Cost.** The prices are in `render_pricing_config.json`. Compute is charged per CPU, memory per GB of the
measured peak, both per hour of training. Storage is the model folder's size, for one month."""),
        code(r"""
# Cost table: what each fruit's training cost, read from the run's cost records.
report = run.read_cost_report() or {}
totals = report.get("totals", {})
storage = (report.get("breakdown") or {}).get("storage") or {}
print(f"{'fruit':<12}{'minutes':>9}{'s/epoch':>9}{'peak GiB':>9}{'compute $':>12}{'memory $':>12}"
      f"{'compute+memory $':>18}")
for f in FRUITS:
    c = histories[f].get("cost") or {}
    money = c.get("cost") or {}
    print(f"{f:<12}{fmt(c.get('training_time_minutes'), '.2f'):>9}{fmt(c.get('time_per_epoch_seconds'), '.3f'):>9}"
          f"{fmt(c.get('peak_memory_gb'), '.2f'):>9}{fmt(money.get('compute'), '.6f'):>12}"
          f"{fmt(money.get('memory'), '.6f'):>12}{fmt(money.get('total'), '.6f'):>18}")
print()
print(f"whole run: {fmt(report.get('training_time_minutes'), '.1f')} min of training, peak memory "
      f"{fmt(report.get('peak_memory_gb'), '.2f')} GiB")
for k in ("compute", "memory", "training", "storage", "total"):
    print(f"  {k:<9} ${fmt(totals.get(k), '.6f')}")
together = config.get("schedule", "together") == "together" and len(FRUITS) > 1
first = histories[FRUITS[0]].get("cost") or {}
notes = ["- **Per fruit:** compute and memory of that fruit's training time. Storage is not in these rows.",
         (f"- The {len(FRUITS)} fruits were stepped together, so each fruit's time is an equal share of the run's "
          f"time ({fmt(first.get('training_time_minutes'), '.1f')} of "
          f"{fmt(report.get('training_time_minutes'), '.1f')} min)."
          if together else "- The fruits were trained one after another: each fruit's time is its own."),
         f"- Memory is charged at the process's peak ({fmt(report.get('peak_memory_gb'), '.2f')} GiB) over each "
         "fruit's hours.",
         f"- **Storage** is counted once, for the whole model folder: {fmt(storage.get('size_gb'), '.2f')} GiB at "
         f"${fmt(storage.get('cost_per_gb'), '.2f')} per GB for one month = ${fmt(totals.get('storage'), '.6f')}.",
         f"- The records' *cost per fruit* (${fmt(report.get('cost_per_fruit'), '.6f')}) is the whole total over the "
         f"{len(FRUITS)} fruits: storage included."]
display(Markdown("\n".join(notes)))
"""),
        md(r"""
**Quality.** The figures below compare each fruit's fakes with its real drawings. Without held-out
drawings, the real drawings are the ones the GAN trained on: then the figures cannot tell new drawings from
copies. *At the last epoch* nothing chose the figures. *At the best checkpoint* the run chose the milestone by
these figures themselves, unless they come from a test part."""),
        code(r"""
# Quality figures per fruit: at the last epoch, at the best checkpoint, and real drawings against real ones.
def quality_rows():
    rows = []
    for f in FRUITS:
        h = histories[f]
        quality = h.get("quality") or []
        last = quality[-1] if quality else {}
        best = next((q for q in quality if q["epoch"] == h.get("best_epoch")), {})
        ref = h.get("reference_quality") or {}
        figures, entry = REPORTED.get(f, ({}, {}))
        rows.append(dict(fruit=f, real=h.get("num_real_images"), epoch=last.get("epoch"), milestones=len(quality),
                         recog=last.get("recognizability"), fid=last.get("fid"), recall=last.get("recall"),
                         coverage=last.get("coverage"), best_epoch=h.get("best_epoch"),
                         best_recog=best.get("recognizability"), best_fid=best.get("fid"),
                         real_recog=ref.get("heldout_recognizability"), real_fid=ref.get("fid_real_halves"),
                         real_recall=ref.get("recall"), half=ref.get("half_size"),
                         pooled_recog=ref.get("recognizer_heldout_accuracy"),
                         pooled_count=ref.get("recognizer_heldout_count"),
                         kind=heldout_kind(h, entry), heldout=interval(figures),
                         heldout_note=figures.get("two_sample_note")))
    return rows

def real_recognition(rows):
    # How often the recogniser names real drawings it never trained on: per fruit where the dataset held some
    # out, else its own held-out drawings pooled over the fruits (a handful each), else None.
    per_fruit = [r["real_recog"] for r in rows if number(r["real_recog"])]
    if per_fruit:
        return dict(value=sum(per_fruit) / len(per_fruit), text=span(per_fruit, ".0%"), per_fruit=True)
    pooled = [(r["pooled_recog"], r["pooled_count"]) for r in rows if number(r["pooled_recog"]) and r["pooled_count"]]
    if not pooled:
        return dict(value=None, text="not measured (no real drawings were held out from it)", per_fruit=False)
    acc, n = pooled[0]
    se = math.sqrt(acc * (1 - acc) / n)
    return dict(value=acc, per_fruit=False, short=f"{acc:.0%} (standard error {se:.0%}, {n} drawings)",
                text=f"{acc:.0%} (standard error {se:.0%}, {n} drawings pooled over the fruits: a handful per fruit, "
                     "too few for one figure each)")

Q = quality_rows()
print(f"{'':<12}{'':>6} | {'last epoch':^31} | {'best checkpoint':^22} | {'real vs real':^20}")
print(f"{'fruit':<12}{'real':>6} | {'epoch':>6}{'recog.':>7}{'FID':>7}{'recall':>7}{'cover':>6} | {'epoch':>6}"
      f"{'recog.':>8}{'FID':>8} | {'recog.':>6}{'FID':>7}{'recall':>7}")
for r in Q:
    print(f"{r['fruit']:<12}{fmt(r['real'], 'd'):>6} | {fmt(r['epoch'], 'd'):>6}{fmt(r['recog'], '.0%'):>7}"
          f"{fmt(r['fid'], '.2f'):>7}{fmt(r['recall'], '.2f'):>7}{fmt(r['coverage'], '.2f'):>6} | "
          f"{fmt(r['best_epoch'], 'd'):>6}{fmt(r['best_recog'], '.0%'):>8}{fmt(r['best_fid'], '.2f'):>8} | "
          f"{fmt(r['real_recog'], '.0%'):>6}{fmt(r['real_fid'], '.2f'):>7}{fmt(r['real_recall'], '.2f'):>7}")
REAL_RECOG = real_recognition(Q)
REAL_RECOG.setdefault("short", REAL_RECOG["text"])
print()
print("recog.: share recognised as the intended fruit; FID: lower = closer to the real drawings; recall, cover "
      "(coverage): share of real drawings with a fake nearby")
print(f"real vs real: the recogniser on real drawings it never trained on ('recog.'; {REAL_RECOG['text']}), "
      f"the FID between two halves of the real drawings ({span([r['half'] for r in Q], 'd')} drawings each), "
      "and the recall of one half against the other")
chosen = [r["fruit"] for r in Q if r["kind"] != "test"]
if chosen:
    counts = span([r["milestones"] for r in Q if r["fruit"] in chosen], "d")
    print(f"best checkpoint of {names(chosen)}: chosen among {counts} milestones on these same figures, "
          "so they are optimistic")
for r in Q:
    if r["heldout"] and r["kind"] == "test":
        print(f"{r['fruit']}: held-out two-sample accuracy, test part: {r['heldout']}")
"""),
        code(r"""
# Quality over training: the share recognised and the Fréchet distance at each milestone.
fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 4.5))
for f in FRUITS:
    q = [x for x in histories[f].get("quality") or [] if number(x.get("recognizability"))]
    a1.plot([x["epoch"] for x in q], [x["recognizability"] for x in q], marker="o", label=f)
    q = [x for x in histories[f].get("quality") or [] if number(x.get("fid"))]
    a2.plot([x["epoch"] for x in q], [x["fid"] for x in q], marker="o", label=f)
a1.set_title("share recognised as the intended fruit"); a1.set_xlabel("epoch"); a1.set_ylim(0, 1.05)
a2.set_title("Fréchet distance to the real drawings (lower = closer)"); a2.set_xlabel("epoch")
a2.set_yscale("log"); a1.legend(fontsize=8)
plt.tight_layout(); plt.show()
"""),
        md(r"""
## How real do the fakes look, on drawings the GAN never saw?

Figures measured against the training drawings cannot tell drawing *new* fruit from copying. So
`rawDataToImage.py` keeps a share of each fruit's real drawings out of training: the *held-out* drawings.
They are split in two. The *validation part* picks the best checkpoint. The *test part* measures that one
checkpoint, once, at the end: its figure is the one reported, because it took part in no choice. A split
needs enough real drawings; the first cell counts what the bundled sample allows."""),
        code(r"""
# What the bundled sample can hold out per fruit, by heldout_split.py's rule and settings.py's shares.
from fruitgan.data import heldout_split
from fruitgan.data import image_conversion
from fruitgan.data import quickdraw_formats as qf
print(f"rule: hold out {settings.HELDOUT_SHARE:.0%} of a fruit's real drawings, at least {settings.HELDOUT_MIN} where "
      f"it has them, at most {settings.HELDOUT_MAX_SHARE:.0%}; no split below {settings.SPLIT_MIN_HELDOUT}. "
      f"Validation part: {settings.VALIDATION_SHARE:.0%} of them, the rest is the test part.")
scan = qf.scan_raw_data(ROOT / "rawData")
print(f"{'fruit':<12}{'stroke drawings':>16}{'28 px bitmaps':>14}{'held out at 28 px (val + test)':>32}"
      f"{'held out at 64 px':>19}")
SPLITS = {}
for f in qf.FRUITS:
    files = scan.files_for(f)
    strokes = image_conversion.stroke_drawing_estimate(files)
    bitmaps = sum(i.rows for i in qf.select_files(files, [qf.BITMAP]))
    SPLITS[f] = {28: heldout_split.heldout_size(max(strokes, bitmaps)), 64: heldout_split.heldout_size(strokes)}
    n28 = SPLITS[f][28]
    val = heldout_split.validation_size(n28)
    parts = f"{n28} ({val} + {n28 - val})" if n28 else "not enough"
    print(f"{f:<12}{strokes:>16}{bitmaps:>14}{parts:>32}{SPLITS[f][64] or 'not enough':>19}")
MEASURABLE = [f for f in qf.FRUITS if SPLITS[f][28]]
print(f"\nfruits the sample can measure on held-out drawings: {names(MEASURABLE)} (at 28 px, from Google's bitmaps); "
      f"at 64 px: {names(f for f in qf.FRUITS if SPLITS[f][64])}")
"""),
        code(r"""
# The held-out run: its commands, and each fruit's figures on held-out drawings.
HELD = []
if held is None:
    print(f"no held-out run at {HELDOUT_RUN}")
else:
    hcfg = held.read_config()
    hfruits = (held.read_summary() or {}).get("fruits") or hcfg["fruits"]
    hhist = {f: held.read_history(f) or {} for f in hfruits}
    hreported = reported(held)
    print("commands (the held-out run):")
    for command in run_commands(hcfg):
        print(f"  {command}")
    print()
    data_table(hcfg, hhist)
    for f in hfruits:
        h, (figures, entry) = hhist[f], hreported.get(f, ({}, {}))
        kind, quality = heldout_kind(h, entry), h.get("quality") or []
        HELD.append(dict(fruit=f, kind=kind, figures=figures, test=entry.get("test") or {},
                         best_epoch=h.get("best_epoch"), quality=quality,
                         note=figures.get("two_sample_note") or h.get("split_note")))
        print(f"\n{f}:")
        if kind in ("test", "pending"):
            print(f"  {'epoch':>6}  {'validation part: two-sample [95%]':<36}{'memorisation':>13}")
            for q in quality:
                chose = "  <- best checkpoint" if q["epoch"] == h.get("best_epoch") else ""
                print(f"  {q['epoch']:>6}  {interval(q, 'val_') or q.get('val_two_sample_note') or '-':<36}"
                      f"{fmt(q.get('val_memorisation_ratio'), '.2f'):>13}{chose}")
        if kind == "test":
            t = entry["test"]
            print(f"  test part, best checkpoint (epoch {t.get('epoch')}), measured once: two-sample "
                  f"{interval(t) or '-'} on {fmt(t.get('two_sample_real'), 'd')} test drawings, memorisation "
                  f"{fmt(t.get('memorisation_ratio'), '.2f')}")
            if t.get("two_sample_note"):
                print(f"  {t['two_sample_note']}")
        elif kind == "pending":
            print("  test part: not measured yet (it is measured once, when the run ends)")
        elif kind == "old":
            print("  OLD FORMAT: a run from before the validation/test split. Every milestone was measured on the")
            print("  same held-out drawings, and the best was chosen on them: these figures are optimistic.")
            print(f"  {'epoch':>6}{'old two-sample':>16}{'spread':>8}{'memorisation':>14}{'recognised':>12}")
            for q in quality:
                chose = "  <- chosen as best" if q["epoch"] == h.get("best_epoch") else ""
                print(f"  {q['epoch']:>6}{fmt(q.get('two_sample_accuracy'), '.2f'):>16}"
                      f"{fmt(q.get('two_sample_std'), '.2f'):>8}{fmt(q.get('memorisation_ratio'), '.2f'):>14}"
                      f"{fmt(q.get('recognizability'), '.0%'):>12}{chose}")
        else:
            print(f"  not measured: {HELD[-1]['note'] or 'no held-out drawings'}")
"""),
        code(r"""
# Real-vs-fake figure of the held-out run: real drawings from rawData/ beside its fakes, at its own size.
if held is not None:
    HELD_SHOWN = real_vs_fake(held, hfruits, hcfg["resolution"],
                              f"Run '{held.name}', {hcfg['resolution']} px: real drawings (left) beside the fakes")
"""),
        md(r"""
### Why noise can be "recognised"

The recogniser must name one of the fruits it knows. It has no answer "none of these". So any image, noise
included, is called *some* fruit. The cell below trains the project's recogniser on the bundled drawings
and shows it noise. The two-sample test compares with real drawings instead of choosing between fruits."""),
        code(r"""
# The all-fruit recogniser, shown uniform noise and the untrained generator's images of step 3.
with tempfile.TemporaryDirectory() as tmp:             # the recogniser's cache stays out of the repository
    (Path(tmp) / "rawData").symlink_to(ROOT / "rawData")
    recogniser, recog_info = gan_evaluation.load_or_train_recognizer(Path(tmp), "report", RES)
uniform = torch.rand(256, 1, RES, RES, generator=torch.Generator().manual_seed(1)) * 2 - 1
NOISE_SETS = {"uniform noise": uniform, "the untrained generator's images (step 3)": images}
NOISE_VERDICTS = {}
if recogniser is None:
    print("no recogniser:", recog_info["note"])
else:
    for name, x in NOISE_SETS.items():
        pred, probs = gan_evaluation.predict(recogniser, x)
        named = collections.Counter(recogniser.fruits[i] for i in pred.tolist()).most_common()
        NOISE_VERDICTS[name] = dict(named=named, share=named[0][1] / len(pred),
                                    confidence=probs.max(dim=1).values.mean().item())
        print(f"{name}: named {', '.join(f'{f} {n}' for f, n in named)} of {len(pred)}; "
              f"mean top probability {NOISE_VERDICTS[name]['confidence']:.2f}")
# The two-sample test on the held-out run's first milestone, when its generator had barely started.
FIRST_TWO_SAMPLE = None
for r in HELD:
    first = (r["quality"] or [{}])[0]
    text = interval(first, "val_") or interval(first)
    if text:
        FIRST_TWO_SAMPLE = dict(fruit=r["fruit"], epoch=first["epoch"], text=text,
                                part="validation part" if interval(first, "val_") else "old test, held-out drawings")
        print(f"two-sample test, {r['fruit']} at epoch {first['epoch']} ({FIRST_TWO_SAMPLE['part']}): {text}")
        break
"""),
        md(r"""
## The run's files, and drawing new fruit

A training run writes everything into `models/model_<name>/`. The tree below is printed from
`model_store.py`, the one module that writes and reads these files. The report's copies in `report_assets/`
hold only the small files (records and milestone grids), plus one generator for step 3.

To draw new fruit with a trained model, use `generate_images.py`:

| command | what it does |
| --- | --- |
| `python generate_images.py` | the table of models, with their measured quality |
| `python generate_images.py v1` | model v1's fruits and their figures |
| `python generate_images.py v1 apple --num-images 16` | a grid of 16 new apples (a PNG in `outputs/` without a display) |
| `python generate_images.py v1 apple --checkpoint best` | the same, from the best checkpoint (`latest`, `milestone` or an epoch number also work) |
| `python generate_images.py v1 apple --beside-real --seed 0` | real drawings above the fakes; the same seed gives the same images |
| `python generate_images.py v1 apple --num-images 5000 --outdir fakes` | one PNG per image |"""),
        code(r"""
# The models tree, from model_store.py's own description, and the table generate_images.py prints.
doc = model_store.__doc__.splitlines()
tree = doc[2:doc.index("", 2)]
print("\n".join(line[4:] for line in tree))
print()
for folder in filter(None, (run, held)):
    kept = sorted(str(p.relative_to(folder.path)) for p in folder.path.rglob("*") if p.is_file() and p.suffix != ".png")
    grids = sum(len(e) for e in folder.progress_grids().values())
    print(f"{folder.path.name}: {', '.join(kept)}, and {grids} milestone grids")
print()
if held is not None:
    listing = subprocess.run([sys.executable, str(ROOT / "generate_images.py"), "--workdir", str(tool_workdir(held))],
                             capture_output=True, text=True, timeout=300)
    print("$ python generate_images.py")
    print(listing.stdout.strip() or listing.stderr.strip())
    print(f"\nto draw with it: python generate_images.py {held.name} {(hfruits or ['apple'])[0]} --num-images 16 "
          "--checkpoint best (in the folder that holds the whole model)")
    if any(r["kind"] == "old" for r in HELD):
        print("(this run is from before the test part: the table's two-sample figure is its old "
              "best-of-milestones figure)")
"""),
        code(AUTHOR_READING_CELL),
        md("## c) Analysis of the findings"),
        code(ANALYSIS_CELL),
        md(r"""
## d) References

1. I. Goodfellow et al., *Generative Adversarial Nets*, NeurIPS 2014.
2. A. Radford, L. Metz, S. Chintala, *Unsupervised Representation Learning with Deep Convolutional Generative
   Adversarial Networks* (DCGAN), ICLR 2016.
3. M. Heusel et al., *GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium* (FID),
   NeurIPS 2017.
4. D. Lopez-Paz, M. Oquab, *Revisiting Classifier Two-Sample Tests*, ICLR 2017.
5. T. Kynkäänniemi et al., *Improved Precision and Recall Metric for Assessing Generative Models*, NeurIPS 2019.
6. M. F. Naeem et al., *Reliable Fidelity and Diversity Metrics for Generative Models* (density and coverage),
   ICML 2020.
7. E. B. Wilson, *Probable Inference, the Law of Succession, and Statistical Inference*, JASA 1927 (the interval).
8. Google Creative Lab, *The Quick, Draw! Dataset*, https://github.com/googlecreativelab/quickdraw-dataset
   (CC BY 4.0).
9. PyTorch examples, *DCGAN* (`dcgan/main.py`); torchmetrics, `FrechetInceptionDistance`."""),
    ]


# The analysis is written by a cell from the runs' files: no number in it is typed in. Its sentences stay
# short (a student reads the report in 15 minutes).
ANALYSIS_CELL = r'''
# The analysis, written from the figures above: every number in it is computed here from the runs' files.
from fruitgan.metrics.evaluation import HEALTHY_MEMORISATION

def mean(values):
    vals = [v for v in values if number(v)]
    return sum(vals) / len(vals) if vals else None

def capital(text):
    return text[:1].upper() + text[1:]

def money(v):                            # dollars: four decimals, six for the tiny amounts of short runs
    return "-" if not number(v) else f"${v:.4f}" if v >= 0.001 else f"${v:.6f}"

parts = []
real_counts = config.get("dataset", {}).get("real_images", {})
all_counts = config.get("dataset", {}).get("images", {})
aug_share = [1 - real_counts[f] / all_counts[f] for f in FRUITS if number(real_counts.get(f)) and all_counts.get(f)]
done = summary["epochs_done"]
epochs_text = f"{done} epochs" if done >= config["epochs"] else f"{done} of {config['epochs']} epochs, unfinished"
text = (f"**What was trained.** {epochs_text.capitalize()}, {RES} px, {len(FRUITS)} fruits, seed {config['seed']}. "
        f"Each fruit had {span(real_counts.values(), 'd')} real drawings.")
if any(a > 0 for a in aug_share):
    text += f" Augmented copies made up {span(aug_share, '.0%')} of each fruit's images."
parts.append(text)

# What a person sees: the author's reading, for the committed run only.
if READING:
    order = ("looks real", "partly real", "does not look real")
    groups = {v: [f for f in FRUITS if f in READING and READING[f][0] == v] for v in order}
    text = ("**What a person sees** (*the author's reading of this run's epoch-400 grids in 4.2, beside the real "
            "drawings: a judgement, not a measurement*). "
            + " ".join(f"{capital(verdict)}: {names(fs)}." for verdict, fs in groups.items() if fs))
    text += "".join(f"\n- *{f}*: {READING[f][1]}" for f in FRUITS if f in READING)
else:
    text = ("**What a person sees.** This report holds no reading of this run's pictures. Look at the grids in "
            "4.2 and judge for yourself: do the fakes look like the real drawings beside them?")
parts.append(text)

# What the numbers say, and which to trust where they disagree.
last_recog = {r["fruit"]: r["recog"] for r in Q if number(r["recog"])}
if last_recog:
    text = (f"**What the numbers say.** At the last epoch the recogniser named {span(last_recog.values(), '.0%')} "
            f"of each fruit's fakes as that fruit. Per fruit: "
            + ", ".join(f"{f} {v:.0%}" for f, v in last_recog.items())
            + (f". On real drawings it never saw, its accuracy is {REAL_RECOG['short']}."
               if REAL_RECOG["value"] is not None else
               ". Its accuracy on real drawings it never saw was not measured."))
    if REAL_RECOG["value"] is not None and mean(last_recog.values()) > REAL_RECOG["value"]:
        text += " Fakes are easier for it than real drawings: they are clean versions of the commonest shapes."
    fids = [(r["fid"], r["real_fid"]) for r in Q if number(r["fid"]) and number(r["real_fid"])]
    if fids:
        text += (f" FID at the last epoch is {span([a for a, b in fids], '.2f')}; between two halves of the real "
                 f"drawings it is {span([b for a, b in fids], '.2f')}. Halves of {span([r['half'] for r in Q], 'd')} "
                 "drawings make that yardstick rough.")
    parts.append(text)
    fooled = [f for f in FRUITS if READING and READING.get(f, ("",))[0] == "does not look real" and f in last_recog]
    text = "**Where the numbers and the pictures disagree.** "
    if fooled:
        text += " ".join(f"{capital(f)}: {last_recog[f]:.0%} recognised at the last epoch, yet the pictures "
                         f"above do not show {f}." for f in fooled)
        text += " Trust the pictures here, and the held-out test below, for three reasons."
    else:
        text += "Where they do, trust the pictures and the held-out test below, for three reasons."
    no_split = [f for f in FRUITS if not histories[f].get("num_heldout_real_images")]
    who = "" if len(no_split) == len(FRUITS) else f" for {names(no_split)}"
    text += ("\n1. The recogniser must pick one of the fruits it knows. It cannot say \"none of these\". "
             "A scribble closer to grapes than to the others is called grapes. Even noise gets a name (below).")
    text += ("\n2. " + (f"Here{who}, recognition and FID compare the fakes with the drawings the GAN trained on. "
             "They cannot tell new drawings from copies." if no_split else
             "Recognition and FID say how typical a fake is, not whether it could pass for a real drawing."))
    text += ("\n3. Only the two-sample test on held-out drawings can say \"these are fakes\". "
             + (f"This run has no held-out drawings{who}: too few real drawings for a split."
                if no_split else "This run has them for every fruit: see its figures in 4.5."))
    parts.append(text)

chosen = [r for r in Q if r["kind"] != "test" and number(r["best_recog"])]
if chosen:
    better = [r["fruit"] for r in chosen if number(r["recog"]) and r["best_recog"] > r["recog"]]
    text = (f"**\"Best\" figures are optimistic.** Each fruit's best checkpoint was picked among "
            f"{span([r['milestones'] for r in chosen], 'd')} milestones on the same figures it reports. "
            "The best of several tries on the same drawings flatters the result.")
    text += " Read the last epoch's figures: nothing chose them."
    if better:
        text += (" Share recognised, best checkpoint vs last epoch: "
                 + ", ".join(f"{r['fruit']} {r['best_recog']:.0%} vs {r['recog']:.0%}"
                             for r in chosen if r['fruit'] in better) + ".")
    parts.append(text)

# The held-out run.
if not HELD:
    parts.append(f"**On drawings the GANs never saw:** not measured: no held-out run at {HELDOUT_RUN}.")
else:
    text = f"**On drawings the GANs never saw** (run '{held.name}', {hcfg['resolution']} px)."
    for r in HELD:
        f, t = r["fruit"], r["test"]
        if r["kind"] == "test" and interval(t):
            text += (f"\n- *{f}*: two-sample accuracy {interval(t)} on {fmt(t.get('two_sample_real'), 'd')} test "
                     f"drawings, best checkpoint (epoch {t.get('epoch')}), measured once.")
            if not t.get("two_sample_decided"):
                text += " The interval is too wide to call: too few test drawings."
            elif t["two_sample_low"] > 0.5:
                text += " Even its low end is above 0.5: a small network still tells these fakes apart."
            else:
                text += " The interval holds 0.5: on these drawings the test cannot tell them from real ones."
            memo = t.get("memorisation_ratio")
            if number(memo):
                text += (f" Memorisation ratio {memo:.2f}: " + ("no sign of copying." if memo >= HEALTHY_MEMORISATION
                         else "the fakes sit close to training drawings: copying."))
        elif r["kind"] == "test":
            text += f"\n- *{f}*: not measured on the test part: {t.get('two_sample_note') or 'no figure'}."
        elif r["kind"] == "pending":
            text += f"\n- *{f}*: the test part is measured once, when the run ends: this run has not ended."
        elif r["kind"] == "old":
            best = next((q for q in r["quality"] if q["epoch"] == r["best_epoch"]), r["quality"][-1])
            last = r["quality"][-1]
            text += (f"\n- *{f}*: not measured on a separate test part. This run is from before the split. Its old "
                     f"figure is {fmt(best.get('two_sample_accuracy'), '.2f')} at epoch {best['epoch']}, chosen among "
                     f"{len(r['quality'])} milestones on the same held-out drawings: optimistic. At epoch "
                     f"{last['epoch']}, chosen by nothing: {fmt(last.get('two_sample_accuracy'), '.2f')}. The old test "
                     "was also weaker than today's (see the calibration note in gan_evaluation.py). So read these "
                     "figures as too kind.")
        else:
            text += f"\n- *{f}*: not measured: {r['note'] or 'no held-out drawings'}."
    if any(r["kind"] == "old" for r in HELD):
        text += ("\n\nA run made with today's code gives test-part figures with intervals: "
                 "`python make_report.py --collect-heldout models/model_<name> --execute`.")
    if HELD_READING:
        text += ("\n\n*The author's reading of this run's epoch-400 grids (a judgement, not a measurement):* "
                 + " ".join(f"{capital(f)}: {HELD_READING[f][1]}" for f in hfruits if f in HELD_READING))
    others = [f for f in FRUITS if f not in [r["fruit"] for r in HELD]]
    if others:
        text += (f"\n\nThe other fruits have too few real drawings in the bundled sample for a held-out split. "
                 f"No such figure exists for {names(others)}.")
    parts.append(text)

# How training went.
if D_FAKE:
    text = (f"**How training went.** Over the last {span([len(t) for t in TAIL.values()], 'd')} epochs D(x) was "
            f"{span(D_REAL.values(), '.2f')} and D(G(z)) {span(D_FAKE.values(), '.2f')}.")
    if mean(D_FAKE.values()) < 0.3:
        text += (" The discriminator was winning. It sees the same few real drawings every epoch, so it learns them "
                 "well. This is why the best checkpoint is chosen by quality figures, not by D(G(z)) near 0.5.")
    parts.append(text)

# Noise "recognised".
if NOISE_VERDICTS:
    text = "**Noise \"recognised\".** " + " ".join(
        f"Shown {name}, the recogniser says {v['named'][0][0]} for {v['share']:.0%} of them "
        f"(mean top probability {v['confidence']:.2f})." for name, v in NOISE_VERDICTS.items())
    if FIRST_TWO_SAMPLE:
        text += (f" The two-sample test told the held-out run's epoch-{FIRST_TWO_SAMPLE['epoch']} "
                 f"{FIRST_TWO_SAMPLE['fruit']} fakes from real drawings with accuracy {FIRST_TWO_SAMPLE['text']}.")
    text += " A classifier that must choose a fruit is read next to the two-sample test, never alone."
    parts.append(text)

# What it cost.
if totals:
    text = (f"**What it cost.** {fmt(report.get('training_time_minutes'), '.1f')} minutes of training (device: "
            f"{summary.get('device')}), peak memory {fmt(report.get('peak_memory_gb'), '.2f')} GiB. Compute and memory "
            f"cost {money(totals.get('training'))} for the whole run. One month of storage for the "
            f"{fmt(storage.get('size_gb'), '.2f')} GiB model folder costs {money(totals.get('storage'))}.")
    if number(totals.get("storage")) and number(totals.get("training")):
        text += (" Storage, not training, dominates the bill: `--keep-checkpoint-every` sets how many checkpoints "
                 "stay." if totals["storage"] > totals["training"] else
                 " Training, not storage, dominates the bill: a faster device or fewer epochs lowers it.")
    parts.append(text)
display(Markdown("\n\n".join(parts)))
'''
def build() -> "object":
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = cells()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    return nb


def execute(nb, run_dir: Optional[Path] = None, timeout: int = EXECUTE_TIMEOUT_S, heldout_run: Optional[Path] = None):
    """Run every cell (in this folder) against ``run_dir`` and ``heldout_run``; any cell error raises."""
    from nbclient import NotebookClient

    if run_dir is not None:
        os.environ["FRUITGAN_REPORT_RUN"] = str(Path(run_dir).resolve())
    if heldout_run is not None:
        os.environ["FRUITGAN_REPORT_HELDOUT_RUN"] = str(Path(heldout_run).resolve())
    NotebookClient(nb, timeout=timeout, kernel_name="python3", resources={"metadata": {"path": str(HERE)}}).execute()
    return nb


def assets_for(out: Path) -> Path:
    """Where --collect copies a run for the notebook ``out``: report_assets/model_report beside it, or
    <out stem>_assets/model_report when ``out`` is another notebook in this folder (the committed
    report_assets/ belongs to report.ipynb alone)."""
    out = Path(out).resolve()
    if out == NOTEBOOK:
        return ASSETS
    if out.parent == HERE:
        return HERE / f"{out.stem}_assets" / ASSETS.name
    return out.parent / ASSETS.parent.name / ASSETS.name


def collect(model_dir: Path, dest: Path = ASSETS, generators: Sequence[str] = ()) -> Path:
    """Copy a run's small artefacts (JSON, text, the report's milestone grids) into ``dest``, plus the final
    generator_<fruit>.pt of each fruit in ``generators`` (step 3 draws from one trained generator)."""
    import torch

    from fruitgan.models import store as model_store
    source = model_store.ModelFolder.at(model_dir)         # UserError when it is not a model folder
    if Path(dest).resolve() == source.path.resolve():
        raise UserError(f"{model_dir} is already the report's copy: nothing to collect (the notebook reads it as it is)")
    copy = model_store.ModelFolder(dest, source.name)
    copy.remove()
    copy.info_dir.mkdir(parents=True)
    for p in source.info_dir.iterdir():
        if p.suffix in SMALL_SUFFIXES:
            shutil.copy2(p, copy.info_dir / p.name)
    for fruit, epochs in source.progress_grids().items():
        for epoch in epochs:
            target = copy.progress_grid_path(fruit, epoch)
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source.progress_grid_path(fruit, epoch), target)
    for fruit in generators:
        payload = torch.load(source.generator_path(fruit), map_location="cpu", weights_only=True)
        if payload.get("ema_state_dict"):
            # The report draws from the moving average: one set of weights (torch.save stores shared tensors
            # once), so the copy is half the size; read_generator still reports the moving average.
            payload["state_dict"] = payload["ema_state_dict"]
        copy.write_network(payload)
    return dest


def main(argv: Optional[Sequence[str]] = None) -> int:
    import nbformat

    from fruitgan.models import store as model_store
    p = argparse.ArgumentParser(description="Rebuild (and execute) report.ipynb.")
    p.add_argument("--collect", type=Path, help="copy this model folder's small artefacts first, to "
                   "report_assets/model_report beside the --out notebook (and read the run from there)")
    p.add_argument("--collect-heldout", type=Path, help="copy this model folder (the held-out run: fruits with a "
                   "held-out split) to report_assets/model_heldout beside the --out notebook, with its first "
                   "fruit's final generator")
    p.add_argument("--execute", action="store_true", help="run the notebook and keep its outputs")
    p.add_argument("--run", type=Path, default=None, help="run folder to read (default: report_assets/model_report)")
    p.add_argument("--out", type=Path, default=NOTEBOOK)
    args = p.parse_args(argv)
    if args.collect:
        collected = collect(args.collect, assets_for(args.out))
        print("collected into", collected)
        if args.run is None:
            args.run = collected          # the notebook reads what was just collected, not the committed run
    heldout_run = None
    if args.collect_heldout:
        first = model_store.ModelFolder.at(args.collect_heldout).fruits()[:1]
        heldout_run = collect(args.collect_heldout, assets_for(args.out).parent / HELDOUT_ASSETS.name, first)
        print("collected into", heldout_run)
    nb = build()
    if args.execute:
        execute(nb, args.run, heldout_run=heldout_run)
    from fruitgan.util.safe_files import atomic_write_text

    atomic_write_text(args.out, nbformat.writes(nb))
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

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
"""
from __future__ import annotations

import argparse
import os
import shutil
import sys
from pathlib import Path
from typing import List, Optional, Sequence

from user_io import UserError, run_main

HERE = Path(__file__).resolve().parent
NOTEBOOK = HERE / "report.ipynb"
ASSETS = HERE / "report_assets" / "model_report"
HELDOUT_ASSETS = HERE / "report_assets" / "model_heldout"    # the run measured on held-out drawings
REPORT_EPOCHS = (1, 30, 100, 400)     # the milestone grids the report shows
EXECUTE_TIMEOUT_S = 600               # per cell
SMALL_SUFFIXES = (".json", ".txt")    # info/ files --collect copies (the weights stay out of the repository)


def md(text: str):
    import nbformat

    return nbformat.v4.new_markdown_cell(text.strip("\n"))


def code(text: str):
    import nbformat

    return nbformat.v4.new_code_cell(text.strip("\n"))


def cells() -> List:
    """The report, in the order the assignment asks for."""
    return [
        md("""
# Fake fruit from real doodles: a DCGAN per fruit on Quick, Draw!

*QuickDraw Fruit GAN: technical report.* Every figure and number below is computed in this notebook from a
real training run of the project's own scripts (read from `RUN` and `HELDOUT_RUN`, set in the first code cell),
and the analysis in section c) is written by a cell from those figures, so it always describes the run it
reads: the committed runs in `report_assets/`, or the tiny run CI executes it against to check every cell."""),
        md("""
## a) Problem statement

Images made by generative models circulate on social media next to real photographs, and people judge them
in a glance. Students who have built such a generator know where fakes come from, what they cost to make,
and how their flaws can be measured rather than guessed. This project builds the smallest complete example:
real doodles of seven fruits (apple, banana, blackberry, grapes, pear, strawberry, watermelon) from Google's
*Quick, Draw!* dataset become images, the images become datasets, and one **deep convolutional generative
adversarial network (DCGAN)** per fruit learns to draw new ones. The report then asks, with numbers, *to what
extent the fakes look like the real drawings*: a classifier trained on real doodles must recognise them, their
features must be distributed like the real ones (Fréchet distance), and they must cover the variety of the
real drawings rather than repeat a few (precision / recall, density / coverage)."""),
        md("""
## b) Algorithm of the solution

**Pipeline.** `rawDataToImage.py` streams the ndjson stroke files (or 28x28 numpy bitmaps), filters drawings
by a quality preset (number of strokes, Google's *recognized* flag), renders each drawing centred and scaled
with its aspect ratio kept as anti-aliased white strokes on black, and optionally adds stroke-level
augmented copies (small rotation, scaling, shift and jitter of the real strokes). `imageToNPZ.py` packs one
fruit's images into `npzData/<fruit>_version<NAME>.npz`. `train_gan.py` trains one GAN per fruit with
`MultiFruitGANTrainer` and writes `models/model_<name>/`; `generate_images.py` draws new fruit from it.

**Generator** (noise z ~ N(0, I), 100 values -> image R x R, S = R/4): fully connected 100 -> 128·S·S,
LeakyReLU(0.2), batch normalisation, reshape to 128 x S x S; upsample x2, conv 3x3 128->128, BN, LeakyReLU,
conv 128->64, BN, LeakyReLU; upsample x2, conv 64->64, BN, LeakyReLU; conv 64->1 and **tanh** (pixels in [-1, 1]).

**Discriminator** (image -> one logit; sigmoid = probability "real"): conv 3x3 stride 2 1->32, LeakyReLU,
Dropout2d(0.25); conv 32->64 s2, BN, LeakyReLU, Dropout2d; conv 64->128 s2, BN, LeakyReLU, Dropout2d;
flatten, linear -> 1.

**Losses** (binary cross-entropy on logits, Adam lr 2e-4, betas 0.5/0.999 for both networks):
- discriminator: L_D = ½ [BCE(D(x), 1) + BCE(D(G(z)), 0)], real drawings labelled real, fakes labelled fake;
- generator, through the *stacked* model G then D: L_G = BCE(D(G(z)), 1): **noise-made images are labelled
  real**, so the generator is pushed toward whatever the discriminator currently believes is real.

**Training loop** (per fruit; the trainer steps fruits of equal dataset size together, with the same
arithmetic per fruit):
```
for epoch in 1..E:
    for each batch x of real images (shuffled):
        z  <- N(0, I) of shape (B, 100);   fake <- G(z)
        D step: minimise ½[BCE(D(x),1) + BCE(D(fake.detach()),0)]     # record D(x), D(G(z))
        G step: minimise BCE(D(fake), 1)                                # stacked model, fakes labelled real
    at milestone epochs: save G(fixed noise) as a grid; measure quality; keep the best checkpoint
    save a checkpoint (weights, optimisers, RNG states, history, cost) atomically
```"""),
        code("""
# Set-up: the project's modules and the run this report reads.
import math, os, sys
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
import gan_model
import model_store
from gan_model import GANConfig, Generator, Discriminator, StackedGAN, compile_gan

RUN = Path(os.environ.get("FRUITGAN_REPORT_RUN", ROOT / "report_assets" / "model_report"))
run = model_store.ModelFolder.at(RUN)       # the run's files, read by the module that writes them
config, summary = run.read_config(), run.read_summary()
FRUITS = config["fruits"]
histories = {f: run.read_history(f) for f in FRUITS}
RES = config["resolution"]
# The held-out run (apple and banana on Google's 28 px bitmaps, drawings kept out of training): its own folder.
HELDOUT_RUN = Path(os.environ.get("FRUITGAN_REPORT_HELDOUT_RUN", ROOT / "report_assets" / "model_heldout"))
held = model_store.ModelFolder.at(HELDOUT_RUN) if HELDOUT_RUN.is_dir() else None
torch.manual_seed(0)
print(f"run: {RUN.name} | model {config['model_name']} | dataset version {config['dataset_version']} | "
      f"{RES}px | {len(FRUITS)} fruits | {summary['epochs_done']} of {summary['epochs_planned']} epochs | "
      f"device {summary.get('device')}")
"""),
        code("""
def layer_table(model: nn.Module, example: torch.Tensor):
    \"\"\"Each leaf layer's output shape and parameter count (a Keras-style model summary).\"\"\"
    rows, hooks = [], []
    for name, module in model.named_modules():
        if len(list(module.children())) == 0:
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
"""),
        md("""
## Step 1: build the Generator (1.1-1.8)

Each step adds one part of the generator and shows the shape of what it produces, for one batch of 4 noise
vectors. Step 1.8 then builds the project's `gan_model.Generator`, which holds exactly these layers."""),
        code("""
# 1.1 The settings of the run: image size R, noise size 100, start size S = R/4, generator width C = 128.
cfg = GANConfig(resolution=RES)
S, C, NZ = cfg.start_size, cfg.g_channels, cfg.noise_dim
z = torch.randn(4, NZ)                       # 4 noise vectors of 100 normal values
print(f"R={RES}, S={S}, C={C}, noise {tuple(z.shape)}")
"""),
        code("""
# 1.2 Input layer: fully connected from the 100-dim noise to C*S*S values.
fc = nn.Linear(NZ, C * S * S)
h = fc(z)
print("after the input layer:", tuple(h.shape))
"""),
        code("""
# 1.3 LeakyReLU(0.2): lets a little gradient through for negative inputs (no dead units).
h = nn.LeakyReLU(cfg.leaky_slope)(h)
# 1.4 Batch normalisation over the C channels of the reshaped S x S map: steadier training.
h = nn.BatchNorm2d(C)(h.view(-1, C, S, S))
print("reshaped and normalised:", tuple(h.shape))
"""),
        code("""
# 1.5 Second layer: upsample x2, then two 3x3 convolutions (C->C, C->C/2), each with BN and LeakyReLU.
second = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(C, C, 3, padding=1), nn.BatchNorm2d(C),
                       nn.LeakyReLU(0.2), nn.Conv2d(C, C // 2, 3, padding=1), nn.BatchNorm2d(C // 2),
                       nn.LeakyReLU(0.2))
h = second(h)
print("after the second layer:", tuple(h.shape))
"""),
        code("""
# 1.6 Third layer: upsample x2 to the full size R, a 3x3 convolution C/2->C/2, BN, LeakyReLU.
third = nn.Sequential(nn.Upsample(scale_factor=2), nn.Conv2d(C // 2, C // 2, 3, padding=1),
                      nn.BatchNorm2d(C // 2), nn.LeakyReLU(0.2))
h = third(h)
print("after the third layer:", tuple(h.shape))
"""),
        code("""
# 1.7 Output layer: one grey channel, tanh keeps pixels in [-1, 1] like the training images.
out = torch.tanh(nn.Conv2d(C // 2, 1, 3, padding=1)(h))
print("output:", tuple(out.shape), f"range [{out.min():.2f}, {out.max():.2f}]")
"""),
        code("""
# 1.8 The project's Generator (gan_model.py) holds exactly these layers: its summary and parameter count.
generator = Generator(cfg)
g_params = layer_table(generator, z)
"""),
        md("""
## Step 2: build the Discriminator (2.1-2.8)"""),
        code("""
# 2.1 A batch of 4 real-sized images (here the generator's untrained output).
x = out.detach()
D_CH = cfg.d_channels
# 2.2 Input convolution: 3x3, stride 2 halves the size, 1 -> 32 channels.
h = nn.Conv2d(1, D_CH, 3, stride=2, padding=1)(x)
print("after the input convolution:", tuple(h.shape))
"""),
        code("""
# 2.3 LeakyReLU(0.2), then 2.4 Dropout2d(0.25): drops whole feature maps so D cannot memorise the few drawings.
h = nn.Dropout2d(cfg.dropout)(nn.LeakyReLU(0.2)(h))
print("after LeakyReLU and Dropout2d:", tuple(h.shape), f"share of zeroed values {(h == 0).float().mean():.2f}")
# 2.5 Batch normalisation comes with the next convolutions (not on the input layer, as in DCGAN).
"""),
        code("""
# 2.6 Second layer: conv 32->64 stride 2, BN, LeakyReLU, Dropout2d.
h = nn.Sequential(nn.Conv2d(D_CH, 2 * D_CH, 3, stride=2, padding=1), nn.BatchNorm2d(2 * D_CH),
                  nn.LeakyReLU(0.2), nn.Dropout2d(0.25))(h)
print("after the second layer:", tuple(h.shape))
# 2.7 Third layer: conv 64->128 stride 2, BN, LeakyReLU, Dropout2d.
h = nn.Sequential(nn.Conv2d(2 * D_CH, 4 * D_CH, 3, stride=2, padding=1), nn.BatchNorm2d(4 * D_CH),
                  nn.LeakyReLU(0.2), nn.Dropout2d(0.25))(h)
print("after the third layer:", tuple(h.shape))
"""),
        code("""
# 2.8 Output layer: flatten, one linear unit = one logit per image; sigmoid(logit) = P(real).
logit = nn.Linear(h[0].numel(), 1)(h.flatten(1))
print("logits:", tuple(logit.shape), "P(real):", torch.sigmoid(logit).squeeze(1).detach().numpy().round(3))
discriminator = Discriminator(cfg)
d_params = layer_table(discriminator, x)
"""),
        md("""
## Stacking the two into the GAN

`compile_gan` attaches an Adam optimiser and the binary cross-entropy loss to each network, and builds the
stacked model (G then D) through which the generator is trained with its fakes labelled *real*."""),
        code("""
gan = compile_gan(cfg)
stacked = gan.stacked                                   # StackedGAN: D(G(z))
print(type(gan.g_optimizer).__name__, gan.g_optimizer.defaults["lr"], gan.g_optimizer.defaults["betas"])
print("loss:", gan.loss_fn)
print("stacked output for 4 noise vectors:", tuple(stacked(z).shape))
print(f"parameters: generator {g_params:,}, discriminator {d_params:,}, GAN {g_params + d_params:,}")
"""),
        md("""
## Step 3: noise in, images out (3.1-3.5)"""),
        code("""
# 3.1 Normally distributed noise of shape 100 x 100: 100 vectors of 100 values.
noise = torch.randn(100, 100, generator=torch.Generator().manual_seed(0))
print("noise:", tuple(noise.shape), f"mean {noise.mean():.3f}, std {noise.std():.3f}")
# 3.2 Images from the (untrained) generator.
images = gan_model.generate(gan.generator, noise)        # (100, 1, R, R)
# 3.3 Reshape to 100 plain R x R pictures in [0, 1] for plotting.
pictures = ((images + 1) / 2).reshape(100, RES, RES).numpy()
print("pictures:", pictures.shape)
"""),
        code("""
# 3.4 Plot them as a 10 x 10 grid.
fig, axes = plt.subplots(10, 10, figsize=(6, 6))
for ax, pic in zip(axes.flat, pictures):
    ax.imshow(pic, cmap="gray", vmin=0, vmax=1)
    ax.axis("off")
fig.suptitle("An untrained generator: 100 noise vectors")
plt.show()
# 3.5 Before training every picture is the same grey texture: the layers exist, the drawing is not learnt yet.
print(f"pixel spread between images (mean std over the 100): {pictures.std(axis=0).mean():.4f}")
"""),
        code("""
# 3.6 The same 100 noise vectors through a TRAINED generator: the held-out run's first fruit, final weights.
trained_fruit = held.fruits()[0] if held is not None else None
if trained_fruit and held.generator_path(trained_fruit).is_file():
    trained, used_ema = held.read_generator(trained_fruit)
    t_res = trained.config.resolution
    t_pictures = ((gan_model.generate(trained, noise) + 1) / 2).reshape(100, t_res, t_res).numpy()
    fig, axes = plt.subplots(10, 10, figsize=(6, 6))
    for ax, pic in zip(axes.flat, t_pictures):
        ax.imshow(pic, cmap="gray", vmin=0, vmax=1)
        ax.axis("off")
    weights = "moving-average weights" if used_ema else "weights"
    fig.suptitle(f"Trained: the {trained_fruit} generator of run '{held.name}' ({weights}), same noise")
    plt.show()
    print(f"pixel spread between images: {t_pictures.std(axis=0).mean():.4f} trained, "
          f"{pictures.std(axis=0).mean():.4f} untrained: each noise vector now gives its own drawing")
else:
    print(f"no trained generator weights in {HELDOUT_RUN}: run the held-out commands of section 4.6")
"""),
        md("""
## Step 4: training (4.1-4.5)

### 4.1 The run

The run was made with the project's own commands (printed below from the run's saved configuration)."""),
        code("""
def run_commands(cfg):
    # The project's commands that made a run, rebuilt from its saved settings (a setting it did not save is
    # left at its default).
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
    return [f"python rawDataToImage.py --yes {' '.join(make)}", f"python imageToNPZ.py --yes --version {version}", train]

ds = config.get("dataset", {})
print("commands:")
for command in run_commands(config):
    print(f"  {command}")
print()
print(f"{'fruit':<12}{'real drawings':>14}{'augmented':>11}{'images':>8}")
for f in FRUITS:
    real = ds.get("real_images", {}).get(f)
    total = ds.get("images", {}).get(f)
    print(f"{f:<12}{real:>14}{total - real:>11}{total:>8}")
print()
print("description:", config.get("description") or "(none)")
"""),
        md("### 4.2 What the generators drew at epochs 1, 30, 100 and 400 (fixed noise, first 16 images)"),
        code("""
available = run.progress_grid_epochs()
wanted = [1, 30, 100, 400]
shown = [min(available, key=lambda a: abs(a - w)) for w in wanted]   # the nearest saved milestone
shown = list(dict.fromkeys(shown))
fig, axes = plt.subplots(len(FRUITS), len(shown), figsize=(2.4 * len(shown), 2.4 * len(FRUITS)), squeeze=False)
for r, f in enumerate(FRUITS):
    for c, e in enumerate(shown):
        grid = np.asarray(Image.open(run.progress_grid_path(f, e)))
        cell = grid.shape[1] // 8
        axes[r, c].imshow(grid[: cell * 4, : cell * 4], cmap="gray")  # the first 4 x 4 images
        axes[r, c].set_xticks([]); axes[r, c].set_yticks([])
        if r == 0: axes[r, c].set_title(f"epoch {e}")
        if c == 0: axes[r, c].set_ylabel(f)
plt.tight_layout(); plt.show()
"""),
        md("### 4.3 Loss curves"),
        code("""
fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharex=True)
for ax, f in zip(axes.flat, FRUITS):
    ep = [e["epoch"] for e in histories[f]["epochs"]]
    ax.plot(ep, [e["d_loss"] for e in histories[f]["epochs"]], label="D loss")
    ax.plot(ep, [e["g_loss"] for e in histories[f]["epochs"]], label="G loss")
    ax.set_title(f); ax.set_xlabel("epoch")
axes.flat[0].legend()
for ax in list(axes.flat)[len(FRUITS):]: ax.axis("off")
plt.tight_layout(); plt.show()
"""),
        md("### 4.4 What the discriminator believed: D(x) on real drawings and D(G(z)) on fakes"),
        code("""
fig, axes = plt.subplots(2, 4, figsize=(16, 7), sharex=True, sharey=True)
for ax, f in zip(axes.flat, FRUITS):
    ep = [e["epoch"] for e in histories[f]["epochs"]]
    ax.plot(ep, [e["d_real"] for e in histories[f]["epochs"]], label="D(x)")
    ax.plot(ep, [e["d_fake"] for e in histories[f]["epochs"]], label="D(G(z))")
    ax.axhline(0.5, color="grey", lw=0.5); ax.set_title(f); ax.set_ylim(0, 1)
axes.flat[0].legend()
for ax in list(axes.flat)[len(FRUITS):]: ax.axis("off")
plt.tight_layout(); plt.show()
last = {f: histories[f]["epochs"][-1] for f in FRUITS}
for f in FRUITS:
    tail = histories[f]["epochs"][-20:]
    print(f"{f:<12} last 20 epochs: mean D(x) {np.mean([e['d_real'] for e in tail]):.3f}, "
          f"mean D(G(z)) {np.mean([e['d_fake'] for e in tail]):.3f}")
"""),
        md("### 4.5 What it cost, and how real the fakes look"),
        code("""
rows = []
for f in FRUITS:
    c = histories[f].get("cost", {})
    rows.append((f, c.get("training_time_minutes", float("nan")), c.get("time_per_epoch_seconds", float("nan")),
                 c.get("peak_memory_gb", float("nan")), c.get("cost", {}).get("total", float("nan")),
                 c.get("cost", {}).get("per_epoch", float("nan"))))
print(f"{'fruit':<12}{'minutes':>9}{'s/epoch':>9}{'peak GiB':>9}{'cost $':>12}{'$/epoch':>12}")
for f, m, spe, gb, tot, pe in rows:
    print(f"{f:<12}{m:>9.2f}{spe:>9.3f}{gb:>9.2f}{tot:>12.6f}{pe:>12.8f}")
report = run.read_cost_report()
totals = report.get("totals", {})
print()
print(f"whole run: {report['training_time_minutes']:.1f} min, {report['epochs_total']} fruit-epochs, peak memory "
      f"{report['peak_memory_gb']:.2f} GB")
for k in ("compute", "memory", "training", "storage", "total"):
    print(f"  {k:<9} ${totals[k]:.6f}")
print(f"  per epoch ${report['cost_per_epoch']:.8f}, per hour ${report['cost_per_hour']:.6f}, "
      f"per fruit ${report['cost_per_fruit']:.6f}")
"""),
        code("""
def quality_rows():
    out = []
    for f in FRUITS:
        h = histories[f]
        q = h["quality"][-1] if h["quality"] else {}
        best = next((x for x in h["quality"] if x["epoch"] == h.get("best_epoch")), {})
        ref = h.get("reference_quality") or {}
        out.append(dict(fruit=f, epoch=q.get("epoch"), recog=q.get("recognizability"), fid=q.get("fid"),
                        precision=q.get("precision"), recall=q.get("recall"), coverage=q.get("coverage"),
                        best_epoch=h.get("best_epoch"), best_recog=best.get("recognizability"),
                        best_fid=best.get("fid"), real_recog=ref.get("heldout_recognizability"),
                        pooled_recog=ref.get("recognizer_heldout_accuracy"),
                        pooled_count=ref.get("recognizer_heldout_count"),
                        real_fid=ref.get("fid_real_halves"), real_recall=ref.get("recall")))
    return out

def real_recognition(rows):
    \"\"\"How often the recogniser names real drawings it never trained on: per fruit where the dataset held some
    out, else its own held-out drawings pooled over the fruits (a handful each), else None.\"\"\"
    per_fruit = [r["real_recog"] for r in rows if isinstance(r["real_recog"], (int, float))]
    if per_fruit:
        lo, hi = f"{min(per_fruit):.0%}", f"{max(per_fruit):.0%}"
        return dict(value=sum(per_fruit) / len(per_fruit), text=lo if lo == hi else f"{lo}-{hi}", per_fruit=True)
    pooled = [(r["pooled_recog"], r["pooled_count"]) for r in rows if isinstance(r["pooled_recog"], (int, float))]
    if not pooled:
        return dict(value=None, text="not measured (no real drawings were held out from it)", per_fruit=False)
    acc, n = pooled[0]
    return dict(value=acc, per_fruit=False, text=f"{acc:.0%} (standard error {math.sqrt(acc * (1 - acc) / n):.0%}; {n} "
                f"drawings pooled over the fruits: a handful per fruit, too few to give one figure each)")

def fmt(v, spec):
    return format(v, spec) if isinstance(v, (int, float)) and v is not None else "-"

Q = quality_rows()
print(f"{'fruit':<12}{'recog.':>8}{'FID':>8}{'prec.':>7}{'recall':>7}{'cover.':>7} | {'best ep':>7}{'recog.':>8}"
      f"{'FID':>8} | {'real recog.':>11}{'real-real FID':>14}")
for r in Q:
    print(f"{r['fruit']:<12}{fmt(r['recog'], '.0%'):>8}{fmt(r['fid'], '.2f'):>8}{fmt(r['precision'], '.2f'):>7}"
          f"{fmt(r['recall'], '.2f'):>7}{fmt(r['coverage'], '.2f'):>7} | {fmt(r['best_epoch'], 'd'):>7}"
          f"{fmt(r['best_recog'], '.0%'):>8}{fmt(r['best_fid'], '.2f'):>8} | {fmt(r['real_recog'], '.0%'):>11}"
          f"{fmt(r['real_fid'], '.2f'):>14}")
REAL_RECOG = real_recognition(Q)
if not REAL_RECOG["per_fruit"]:
    print(f"real recog.: the recogniser on real drawings it never trained on: {REAL_RECOG['text']}")
"""),
        code("""
# Quality over training: recognisability and Fréchet distance at each milestone.
fig, (a1, a2) = plt.subplots(1, 2, figsize=(14, 4.5))
for f in FRUITS:
    q = histories[f]["quality"]
    a1.plot([x["epoch"] for x in q], [x["recognizability"] for x in q], marker="o", label=f)
    a2.plot([x["epoch"] for x in q], [x["fid"] for x in q], marker="o", label=f)
a1.set_title("share recognised as the intended fruit"); a1.set_xlabel("epoch"); a1.set_ylim(0, 1.05)
a2.set_title("Fréchet distance to the real drawings (classifier features)"); a2.set_xlabel("epoch")
a2.set_yscale("log"); a1.legend(fontsize=8)
plt.tight_layout(); plt.show()
"""),
        md("""
### 4.6 How real do the fakes look, on drawings the GAN never saw

Figures measured against the drawings a generator trained on cannot tell drawing *new* fruit from copying
the training set. The project's headline test therefore keeps a share of each fruit's real drawings out of
training (the *held-out split*) and asks two questions of them (`gan_evaluation.py`):

- **two-sample accuracy**: a small CNN is trained to tell generated images from held-out real drawings and
  measured on images it did not train on; 0.5 means it cannot tell them apart, 1.0 means trivially;
- **memorisation ratio**: how close the fakes sit to their nearest training drawing, over how close new real
  drawings sit to it; about 1 is healthy, well below 1 means copying.

A split needs enough real drawings. The table below counts what the bundled sample holds per fruit and what a
dataset made from it could hold out, at the sizes the assignment uses."""),
        code("""
import quickdraw_formats as qf
import rawDataToImage
from gan_evaluation import MIN_TWO_SAMPLE_PER_HALF

scan = qf.scan_raw_data(ROOT / "rawData")
print(f"{'fruit':<12}{'stroke drawings':>16}{'28 px bitmaps':>14}{'held out at 28 px':>19}{'held out at 64 px':>19}")
splits = {}
for f in qf.FRUITS:
    files = scan.files_for(f)
    strokes = rawDataToImage.stroke_drawing_estimate(files)
    bitmaps = sum(i.rows for i in qf.select_files(files, [qf.BITMAP]))
    splits[f] = {28: rawDataToImage.heldout_size(max(strokes, bitmaps)), 64: rawDataToImage.heldout_size(strokes)}
    print(f"{f:<12}{strokes:>16}{bitmaps:>14}{splits[f][28] or 'not enough':>19}{splits[f][64] or 'not enough':>19}")
measurable = [f for f in qf.FRUITS if splits[f][28]]
print(f"\\nfruits that can be measured on held-out drawings: {', '.join(measurable) or 'none'} (at 28 px, from the "
      f"bitmaps); at 64 px: {', '.join(f for f in qf.FRUITS if splits[f][64]) or 'none'}. The two-sample test "
      f"needs {2 * MIN_TWO_SAMPLE_PER_HALF} held-out drawings per fruit.")
"""),
        md("""
So the held-out test is run where it can be: apple and banana on Google's 28 px bitmaps, in a run of their
own with the default recipe (its commands below). Where the 7-fruit run above holds no drawings out (the
cell's first lines say which fruits, and why), its figures in 4.5 are measured against its training drawings
and say nothing about copying."""),
        code("""
def held_rows(folder):
    rows = []
    record = folder.read_summary() or folder.read_config() or {}
    for f in record.get("fruits") or folder.fruits():     # the collected copy keeps one fruit's weights only
        h = folder.read_history(f) or {}
        q = [x for x in h.get("quality", []) if x.get("two_sample_accuracy") is not None]
        last = (h.get("quality") or [{}])[-1]
        rows.append(dict(fruit=f, measured=q, last=last, heldout=h.get("num_heldout_real_images"),
                         train=h.get("num_train_images", h.get("num_images")), note=last.get("two_sample_note")))
    return rows

split = {f: histories[f].get("num_heldout_real_images") or 0 for f in FRUITS}
unsplit = [f for f in FRUITS if not split[f]]
held_out = ", ".join(f"{f} {n}" for f, n in split.items() if n)
print(f"the {len(FRUITS)}-fruit run holds out: {held_out or 'no drawings'}")
for f in unsplit:
    print(f"  none for {f}: {histories[f].get('split_note') or 'no split'}")
print()
if held is None:
    HELD = []
    print(f"no held-out run at {HELDOUT_RUN}")
else:
    hcfg = held.read_config()
    HELD = held_rows(held)
    print("commands (the held-out run):")
    for command in run_commands(hcfg):
        print(f"  {command}")
    print()
    print(f"{'fruit':<10}{'trained on':>11}{'held out':>9}{'epoch':>7}{'2-sample':>10}{'+-':>6}{'memo.':>7}"
          f"{'recognised':>11}")
    for r in HELD:
        for q in (r["measured"] or [r["last"]]):
            print(f"{r['fruit']:<10}{fmt(r['train'], 'd'):>11}{fmt(r['heldout'], 'd'):>9}{fmt(q.get('epoch'), 'd'):>7}"
                  f"{fmt(q.get('two_sample_accuracy'), '.2f'):>10}{fmt(q.get('two_sample_std'), '.2f'):>6}"
                  f"{fmt(q.get('memorisation_ratio'), '.2f'):>7}{fmt(q.get('recognizability'), '.0%'):>11}")
        if r["note"]:
            print(f"  {r['fruit']}: {r['note']}")
"""),
        md("""
#### Why noise can be "recognised"

A generator's first grey textures can be "recognised" as its fruit (section c, the analysis, says whether it
happened in this run, and when). A recogniser is a classifier that must name one of the fruits it knows: it has no
answer "none of these", so any image, noise included, is called *some* fruit, and a texture unlike every
drawing can land on one fruit's side of its boundaries every time. The cell below trains the project's
all-fruit recogniser on the bundled drawings and shows it noise; the two-sample test, which compares with
real drawings instead of choosing between fruits, is shown the same images."""),
        code("""
import collections, tempfile
import gan_evaluation

with tempfile.TemporaryDirectory() as tmp:             # the recogniser's cache stays out of the repository
    (Path(tmp) / "rawData").symlink_to(ROOT / "rawData")
    recogniser, recog_info = gan_evaluation.load_or_train_recognizer(Path(tmp), "report", RES)
    drawn, _ = gan_evaluation.render_rawdata_fruits(Path(tmp), RES)
uniform = torch.rand(256, 1, RES, RES, generator=torch.Generator().manual_seed(1)) * 2 - 1
NOISE_SETS = {"uniform noise": uniform, "untrained generator (step 3)": images}
NOISE_VERDICTS = {}
if recogniser is None:
    print("no recogniser:", recog_info["note"])
else:
    for name, x in NOISE_SETS.items():
        pred, probs = gan_evaluation.predict(recogniser, x)
        named = collections.Counter(recogniser.fruits[i] for i in pred.tolist()).most_common()
        NOISE_VERDICTS[name] = dict(named=named, share=named[0][1] / len(pred),
                                    confidence=probs.max(dim=1).values.mean().item())
        print(f"{name:<30} named {', '.join(f'{f} {n}' for f, n in named)} of {len(pred)}; "
              f"mean top probability {NOISE_VERDICTS[name]['confidence']:.2f}")
most = max(drawn, key=lambda f: drawn[f].shape[0])
NOISE_TWO_SAMPLE = gan_evaluation.two_sample_test(drawn[most], images)
print(f"two-sample test, {most} drawings vs the untrained generator's images: accuracy "
      f"{fmt(NOISE_TWO_SAMPLE['two_sample_accuracy'], '.2f')} {NOISE_TWO_SAMPLE.get('two_sample_note') or ''}")
"""),
        md("## c) Analysis of the findings"),
        code("""
# The figures the analysis rests on, computed from the run (not typed in).
def mean(values):
    values = [v for v in values if isinstance(v, (int, float))]
    return sum(values) / len(values) if values else float("nan")

best_recog = {r["fruit"]: r["best_recog"] for r in Q}
lines = [
    f"- Mean share of best-checkpoint fakes recognised as their fruit: **{mean(best_recog.values()):.0%}** "
    f"(real drawings the recogniser never trained on: **{REAL_RECOG['text']}**).",
    f"- Mean Fréchet distance, best checkpoints: **{mean(r['best_fid'] for r in Q):.2f}**; between two halves of "
    f"the real drawings: **{mean(r['real_fid'] for r in Q):.2f}**.",
    f"- Mean recall (share of real drawings whose neighbourhood the fakes reach), final epoch: "
    f"**{mean(r['recall'] for r in Q):.2f}**; real vs real: **{mean(r['real_recall'] for r in Q):.2f}**.",
    f"- Best fruit by recognisability: **{max(best_recog, key=lambda f: best_recog[f] or 0)}**; "
    f"worst: **{min(best_recog, key=lambda f: best_recog[f] or 0)}**.",
    f"- Training time: **{report['training_time_minutes']:.1f} min** in all ({report['training_hours']:.3f} h), "
    f"peak memory **{report['peak_memory_bytes'] / 2**30:.2f} GiB**, total cost **${totals['total']:.6f}**, of which "
    f"compute and memory **${totals['training']:.6f}** and one month of storage **${totals['storage']:.6f}**.",
]
display(Markdown("\\n".join(lines)))
"""),
        code(ANALYSIS_CELL),
        md("""
## d) References

1. I. Goodfellow et al., *Generative Adversarial Nets*, NeurIPS 2014.
2. A. Radford, L. Metz, S. Chintala, *Unsupervised Representation Learning with Deep Convolutional Generative
   Adversarial Networks* (DCGAN), ICLR 2016.
3. M. Heusel et al., *GANs Trained by a Two Time-Scale Update Rule Converge to a Local Nash Equilibrium* (FID),
   NeurIPS 2017.
4. T. Kynkäänniemi et al., *Improved Precision and Recall Metric for Assessing Generative Models*, NeurIPS 2019.
5. M. F. Naeem et al., *Reliable Fidelity and Diversity Metrics for Generative Models* (density and coverage),
   ICML 2020.
6. Google Creative Lab, *The Quick, Draw! Dataset*, https://github.com/googlecreativelab/quickdraw-dataset
   (CC BY 4.0).
7. PyTorch examples, *DCGAN* (`dcgan/main.py`); torchmetrics, `FrechetInceptionDistance`."""),
    ]


# The analysis is written by a cell from the runs' files: no number in it is typed in.
ANALYSIS_CELL = r"""
# The analysis, written from the figures above: every number in it is computed here from the runs' files.
TARGET_TWO_SAMPLE = 0.75        # the project's target (quality issue): at most this two-sample accuracy
from gan_evaluation import HEALTHY_MEMORISATION

def nums(values):
    return [v for v in values if isinstance(v, (int, float)) and not math.isnan(v)]

def span(values, spec):
    vals = nums(values)
    if not vals:
        return "not measured"
    lo, hi = format(min(vals), spec), format(max(vals), spec)
    return lo if lo == hi else f"{lo}-{hi}"

def names(fruits):
    return ", ".join(fruits) if fruits else "none"

real_counts, all_counts = ds.get("real_images", {}), ds.get("images", {})
aug_share = [1 - real_counts[f] / all_counts[f] for f in FRUITS if real_counts.get(f) and all_counts.get(f)]
best_recog = {r["fruit"]: r["best_recog"] for r in Q}
fid_pairs = [(r["fruit"], r["best_fid"], r["real_fid"]) for r in Q if nums([r["best_fid"], r["real_fid"]]) ]
half_sizes = [(histories[f].get("reference_quality") or {}).get("half_size") for f in FRUITS]
tail = {f: histories[f]["epochs"][-20:] for f in FRUITS}
d_fake = {f: float(np.mean([e["d_fake"] for e in tail[f]])) for f in FRUITS}
d_real = {f: float(np.mean([e["d_real"] for e in tail[f]])) for f in FRUITS}
g_loss = {f: float(np.mean([e["g_loss"] for e in tail[f]])) for f in FRUITS}
done = summary["epochs_done"]
epochs_text = f"{done} epochs" if done >= config["epochs"] else f"{done} of {config['epochs']} epochs, unfinished"
parts = [f"**What the committed run shows** ({epochs_text}, {RES} px, {len(FRUITS)} fruits, seed "
         f"{config['seed']}; {span(real_counts.values(), 'd')} real drawings per fruit, {span(aug_share, '.0%')} of "
         f"each fruit's images augmented copies of them)."]

text = (f"*To what extent do the fakes look real?* At the best checkpoint a classifier trained on real drawings "
        f"only recognises {span(best_recog.values(), '.0%')} of each fruit's fakes as the intended fruit ("
        + ", ".join(f"{f} {fmt(v, '.0%')}" for f, v in best_recog.items()) + "); *real* drawings it never trained "
        f"on, it recognises: {REAL_RECOG['text']}.")
if nums(best_recog.values()) and REAL_RECOG["value"] is not None and mean(best_recog.values()) > REAL_RECOG["value"]:
    text += (" The fakes are easier for it than real drawings: they are typical, clean versions of the commonest "
             "shapes. High recognisability says \"looks like the usual fruit\", not \"cannot be told from a real one\".")
at_or_below = [f for f, b, r in fid_pairs if b <= r]
above = [f for f, b, r in fid_pairs if b > r]
text += (f" The best checkpoints' Fréchet distances are at or below the distance between two halves of the real "
         f"drawings for {names(at_or_below)} and above it for {names(above)}; the halves hold only "
         f"{span(half_sizes, 'd')} drawings each, which inflates their distance, so compare orders of magnitude only. "
         f"Recall at the last epoch is {span([r['recall'] for r in Q], '.2f')} (real against real: "
         f"{span([r['real_recall'] for r in Q], '.2f')}) and coverage {span([r['coverage'] for r in Q], '.2f')}.")
parts.append(text)

final = {r["fruit"]: r["recog"] for r in Q if isinstance(r["recog"], (int, float))}
if final:
    worst = min(final, key=final.get)
    measured = [x for x in histories[worst]["quality"] if isinstance(x.get("recognizability"), (int, float))]
    top = max(measured, key=lambda x: x["recognizability"])
    text = (f"*What failed.* {worst.capitalize()} ends weakest: {final[worst]:.0%} recognised at epoch "
            f"{measured[-1]['epoch']}, after {top['recognizability']:.0%} at epoch {top['epoch']}. Over its last 20 "
            f"epochs the discriminator gave real drawings D(x) = {d_real[worst]:.2f} and fakes D(G(z)) = "
            f"{d_fake[worst]:.2f}. Over every fruit's last 20 epochs D(G(z)) is {span(d_fake.values(), '.2f')} and "
            f"the G loss {span(g_loss.values(), '.2f')}")
    text += (": the discriminator wins the second half of training, as it can when it sees the same few real "
             "drawings and their augmented copies every epoch. This is why the best checkpoint is chosen by the "
             "quality figures, not by the last epoch or by D(G(z)) near 0.5." if mean(d_fake.values()) < 0.3 else ".")
    parts.append(text)

early = sorted((x["epoch"], f, x["recognizability"]) for f in FRUITS for x in histories[f]["quality"]
               if x["epoch"] <= 10 and (x.get("recognizability") or 0) >= 0.9)
fooled = [f"{f} ({share:.0%} at epoch {epoch})" for epoch, f, share in early]
text = ("*Noise \"recognised\".* " + (f"Early in training (the run's `generated_epoch_images_<fruit>/` folders show "
        f"what the generators drew then; 4.2 shows the first milestone) the run recognised {names(fooled)}. " if fooled
        else "No fruit's early grey textures were recognised in this run. "))
NOISE_PROSE = {"uniform noise": "uniform noise",
               "untrained generator (step 3)": "the untrained generator's images (step 3)"}
for name, v in NOISE_VERDICTS.items():
    text += (f"Shown {NOISE_PROSE.get(name, name)}, the all-fruit recogniser of 4.6 names {v['named'][0][0]} for "
             f"{v['share']:.0%} of the images (mean top probability {v['confidence']:.2f}). ")
acc = NOISE_TWO_SAMPLE.get("two_sample_accuracy")
if acc is not None:
    text += (f"The two-sample test tells the untrained generator's textures from real drawings with accuracy {acc:.2f}. "
             "A classifier that must choose between fruits cannot say \"none of these\": its recognisability is read "
             "next to the two-sample test, never alone.")
parts.append(text)

scored = [r for r in HELD if r["measured"]]
if scored:
    text = "*On drawings the GANs never saw* (4.6). "
    text += " ".join(f"{r['fruit'].capitalize()}: two-sample accuracy {r['measured'][-1]['two_sample_accuracy']:.2f} "
                     f"(spread {fmt(r['measured'][-1].get('two_sample_std'), '.2f')} over seeds, "
                     f"{r['measured'][-1].get('two_sample_test_size')} test images) at epoch {r['measured'][-1]['epoch']}, "
                     f"memorisation ratio {fmt(r['measured'][-1].get('memorisation_ratio'), '.2f')}, recognised "
                     f"{fmt(r['measured'][-1].get('recognizability'), '.0%')}." for r in scored)
    ok = [r["fruit"] for r in scored if r["measured"][-1]["two_sample_accuracy"] <= TARGET_TWO_SAMPLE
          and (r["measured"][-1].get("memorisation_ratio") or 0) >= HEALTHY_MEMORISATION]
    text += (f" Within the target (two-sample accuracy at most {TARGET_TWO_SAMPLE}, memorisation at least "
             f"{HEALTHY_MEMORISATION}): {names(ok)}; not within it: {names([r['fruit'] for r in scored if r['fruit'] not in ok])}.")
    def uncertainty(q):      # the larger of the seeds' spread and the binomial error of the test images
        tested = (q.get("two_sample_test_size") or 0) * (q.get("two_sample_seeds") or 1)
        return max(q.get("two_sample_std") or 0, math.sqrt(0.25 / tested) if tested else 0)
    above = [r["fruit"] for r in scored if r["measured"][-1]["two_sample_accuracy"] - 2 * uncertainty(r["measured"][-1]) > 0.5]
    level = [r["fruit"] for r in scored if r["fruit"] not in above]
    if above:
        text += (f" For {names(above)} the accuracy is above 0.5 by more than twice its uncertainty: a small CNN "
                 "still tells some fakes from real drawings, so they are close to, not indistinguishable from, real doodles.")
    if level:
        text += (f" For {names(level)} it is within twice its uncertainty of 0.5: on these {scored[0]['heldout']} "
                 "held-out drawings the test cannot tell the fakes from real ones.")
    text += (f" The other fruits ({names([f for f in FRUITS if f not in measurable])}) have too few real drawings in "
             "the bundled sample for a held-out split, so no such figure is given for them.")
else:
    text = ("*On drawings the GANs never saw:* not measured: " +
            ("; ".join(f"{r['fruit']}: {r['note']}" for r in HELD if r['note']) or f"no held-out run at {HELDOUT_RUN}") + ".")
parts.append(text)

storage = report["breakdown"]["storage"]
parts.append(
    f"*What it cost.* The run took {report['training_time_minutes']:.1f} minutes on the run's device "
    f"({summary.get('device')}), with a peak of {report['peak_memory_bytes'] / 2**30:.2f} GiB of memory. At the "
    f"prices of `render_pricing_config.json`, compute and memory cost ${totals['training']:.6f} for the whole run, "
    f"and one month of storage for its {storage['size_bytes'] / 2**30:.2f} GiB model folder ${totals['storage']:.6f}: "
    + ("storage, not training, dominates the bill, so the checkpoint policy (`--keep-checkpoint-every`) sets it."
       if totals["storage"] > totals["training"] else
       "training, not storage, dominates the bill: a faster device or fewer epochs lowers it."))
display(Markdown("\n\n".join(parts)))
"""


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

    import model_store

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

    import model_store

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
    from safe_files import atomic_write_text

    atomic_write_text(args.out, nbformat.writes(nb))
    print("wrote", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

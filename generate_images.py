"""Look at what a trained model draws.

    python generate_images.py                               a table of the models there are (models_index.json)
    python generate_images.py v1                            model v1's fruits and their quality figures
    python generate_images.py v1 apple --num-images 16      a grid of new apples (window, or a PNG when headless)
    python generate_images.py v1 apple --num-images 5000 --outdir fakes    5000 PNG files, written in batches
    python generate_images.py v1 apple --interpolate        walks through the latent space between random points
    python generate_images.py v1 apple --classify           ... and what the quality classifier makes of them
    python generate_images.py v1 apple --beside-real        ... with as many real drawings above them

The same --seed always gives the same images (and a byte-identical PNG). Without a display (or with --save)
the grid is written to outputs/generated_<model>_<fruit>_seed<S>.png under the work folder and its path printed.
--checkpoint latest (default) draws with the last finished epoch's weights (checkpoints/latest.pt), milestone
with generator_<fruit>.pt (the last milestone's or the run's end), best with best/generator_<fruit>.pt.
Every file is written through safe_files (atomic; a full disk or read-only folder is a one-line error).
"""
from __future__ import annotations

import argparse
import math
import os
import secrets
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence, Union

import numpy as np
import torch

import gan_model
from fruitgan.util import pictures
from fruitgan.data.heldout_split import validation_as_plain
from fruitgan.util.safe_files import atomic_save_image, default_workdir, owner_tag
from fruitgan.util.settings import SEED, SEED_MAX
from fruitgan.util.user_io import UserError, cli_value, int_in_range, run_main

MAX_IMAGES = 1024            # a grid bigger than this is no longer something to look at
MAX_FILE_IMAGES = 100_000    # --outdir alone: enough for a dataset, not enough to fill a disk by a typo
FILE_BATCH = 256             # images generated and written per step with --outdir (bounded memory)
MAX_ROWS = 64                # interpolation rows
MIN_STEPS, MAX_STEPS = 2, 64
DEFAULT_GRID_IMAGES = 16
DEFAULT_INTERP_ROWS = 4
DEFAULT_STEPS = 8
GENERATE_BATCH = 64          # images per generator pass (bounded memory at 128 px)
MIN_TILE_PX = 64             # small images are enlarged (nearest neighbour, whole factor) to at least this
GRID_PAD = 1                 # pixels between tiles, before enlarging
GRID_PAD_VALUE = 96          # grey: separates the black tile backgrounds
SLERP_EPS = 1e-6             # nearly parallel endpoints: fall back to a straight line
OUTPUTS_DIR = "outputs"
# Tk first: when the display cannot be reached it raises an error we can catch (Qt aborts the process).
INTERACTIVE_BACKENDS = ("TkAgg", "QtAgg", "GTK4Agg", "GTK3Agg", "MacOSX", "WXAgg")


@dataclass
class GenerateConfig:
    """One run of generate_images.py."""

    workdir: Path                       # folder holding models/ (and npzData/ for --classify)
    model: Optional[str]                # model name (models/model_<name>); None: list the models
    fruit: Optional[str]                # fruit to draw; None: describe the model
    num_images: Optional[int]           # images in the grid, or rows with --interpolate (None: default)
    seed: Optional[int]                 # noise seed (None: a random one, printed)
    checkpoint: Union[str, int]         # "latest", "milestone", "best" or an epoch number
    interpolate: bool                   # rows of frames along a great circle between two noise vectors
    steps: int                          # frames per interpolation row (both ends included)
    save: Optional[Path]                # write the grid here instead of showing it
    outdir: Optional[Path]              # write one PNG per image here (instead of the grid, unless --save)
    classify: bool                      # report what the quality classifier sees in the images
    use_ema: bool                       # the moving-average generator weights when the model has them
    beside_real: bool = False           # the grid shows as many real drawings above the fakes


# --------------------------------------------------------------------------------------------- noise and images
def sample_noise(n: int, noise_dim: int, seed: int) -> torch.Tensor:
    """(n, nz) standard normal noise from its own seeded stream (the same seed, the same noise)."""
    return torch.randn(n, noise_dim, generator=torch.Generator().manual_seed(seed))


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (B,nz),(B,nz) -> (B,nz): z0 at t=0, z1 at t=1 exactly.

    Gaussian noise lives near a sphere; the straight line between two points cuts through its (unlikely)
    inside, where images are washed out, while the great circle stays where the generator was trained.
    """
    if t <= 0.0:
        return z0.clone()
    if t >= 1.0:
        return z1.clone()
    n0, n1 = z0 / z0.norm(dim=-1, keepdim=True), z1 / z1.norm(dim=-1, keepdim=True)
    omega = torch.acos((n0 * n1).sum(dim=-1, keepdim=True).clamp(-1.0, 1.0))   # (B,1) angle between them
    so = torch.sin(omega)
    straight = so.abs() < SLERP_EPS
    safe = torch.where(straight, torch.ones_like(so), so)
    arc = (torch.sin((1.0 - t) * omega) / safe) * z0 + (torch.sin(t * omega) / safe) * z1
    return torch.where(straight, (1.0 - t) * z0 + t * z1, arc)


def interpolation_noise(rows: int, steps: int, noise_dim: int, seed: int) -> torch.Tensor:
    """(rows*steps, nz): row r walks from its own random z0 to z1 in ``steps`` frames (ends included)."""
    ends = sample_noise(2 * rows, noise_dim, seed).view(rows, 2, noise_dim)
    frames = [slerp(ends[:, 0], ends[:, 1], i / (steps - 1)) for i in range(steps)]   # steps x (rows, nz)
    return torch.stack(frames, dim=1).reshape(rows * steps, noise_dim)


def noise_batches(n: int, noise_dim: int, seed: int, batch: int) -> Iterator[torch.Tensor]:
    """sample_noise(n, ...) in slices of ``batch`` rows, drawn one after another from the same seeded stream."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        yield torch.randn(min(batch, n - start), noise_dim, generator=gen)


def write_image_files(batches: Iterable[np.ndarray], total: int, outdir: Path, tag: str) -> None:
    """One PNG per image, <tag>_0001.png ... (more digits past 9999), from (B,R,R) uint8 batches, with a
    progress bar; every file atomically (a full disk stops with one line, the files so far stay whole)."""
    from PIL import Image
    from tqdm import tqdm

    digits = max(4, len(str(total)))
    written = 0
    with tqdm(total=total, unit="image", desc="writing", disable=None) as bar:
        for pixels in batches:
            for frame in pixels:
                written += 1
                save_png(Image.fromarray(np.ascontiguousarray(frame)), outdir / f"{tag}_{written:0{digits}d}.png")
            bar.update(len(pixels))
    print(f"wrote {written} images to {outdir}")


def save_png(image, path: Path) -> Path:
    """Write a PIL image as PNG atomically (PIL adds no timestamp: same pixels, same bytes)."""
    return atomic_save_image(image, path)


def show_in_window(image, title: str) -> bool:
    """Show the image in a matplotlib window if there is a display and a GUI backend works; False otherwise.

    Never raises: without a display, with MPLBACKEND set to a file backend (Agg), without a GUI toolkit or
    when the display cannot be reached, the caller saves a PNG instead.
    """
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        return False
    wanted = os.environ.get("MPLBACKEND")
    interactive = {b.lower() for b in INTERACTIVE_BACKENDS}
    if wanted and wanted.lower() not in interactive:
        return False                                # e.g. MPLBACKEND=Agg: the user asked for no window
    try:
        import matplotlib
    except ImportError:
        return False
    previous = matplotlib.get_backend()
    try:
        for backend in [wanted] if wanted else INTERACTIVE_BACKENDS:
            try:
                matplotlib.use(backend, force=True)
                break
            except (ImportError, ValueError, RuntimeError):
                continue
        else:
            return False
        import matplotlib.pyplot as plt

        fig = plt.figure(title)
        plt.imshow(np.asarray(image), cmap="gray", vmin=0, vmax=255, interpolation="nearest")
        plt.axis("off")
        plt.tight_layout()
        plt.show()
        plt.close(fig)
        return True
    except Exception:        # display not reachable after all, or a broken GUI toolkit: save instead
        try:
            import matplotlib.pyplot as plt

            plt.close("all")
            matplotlib.use(previous, force=True)
        except Exception:
            pass
        return False


# --------------------------------------------------------------------------------------------- listing
def _mean(values) -> Optional[float]:
    nums = [float(v) for v in values if isinstance(v, (int, float)) and not isinstance(v, bool) and not math.isnan(v)]
    return sum(nums) / len(nums) if nums else None


def _fmt(value, spec: str) -> str:
    return "-" if value is None else format(value, spec)


def _quality_of(q: dict) -> dict:
    """The best checkpoint's figures (the latest's when there is none), held-out tests from the test part."""
    from fruitgan.models import store as model_store
    return model_store.reported_figures(q or {})


def models_table(models: Sequence[dict]) -> str:
    """One line per model: name, date, dataset, size, fruits, epochs, status, mean best-checkpoint quality."""
    header = ("model", "created", "dataset", "px", "fruits", "epochs", "status", "2-sample", "memo.", "recognised",
              "FID", "coverage")
    rows = [header]
    for m in models:
        per_fruit = [_quality_of(q) for q in m["quality"].values()]
        created = (m.get("created") or "-")[:16].replace("T", " ")
        epochs = f"{_fmt(m.get('epochs_done'), 'd')}/{_fmt(m.get('epochs_planned'), 'd')}"
        rows.append((m["name"], created, str(m.get("dataset_version") or "-"), _fmt(m.get("resolution"), "d"),
                     ",".join(m["fruits"]) or "-", epochs, str(m.get("status") or "-"),
                     _fmt(_mean(q.get("two_sample_accuracy") for q in per_fruit), ".2f"),
                     _fmt(_mean(q.get("memorisation_ratio") for q in per_fruit), ".2f"),
                     _fmt(_mean(q.get("recognizability") for q in per_fruit), ".0%"),
                     _fmt(_mean(q.get("fid") for q in per_fruit), ".2f"),
                     _fmt(_mean(q.get("coverage") for q in per_fruit), ".2f")))
    widths = [max(len(r[i]) for r in rows) for i in range(len(header))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def listing_notes(index: dict) -> List[str]:
    """One line per model with damaged or missing records and per models/ entry that is not a model."""
    notes = [f"  {m['name']}: {'; '.join(m['problems'])}" for m in index["models"].values() if m.get("problems")]
    notes += [f"  models/{odd['entry']}: skipped ({odd['why']})" for odd in index.get("skipped", [])]
    return notes


def heldout_figures_line(workdir: Path, model: str, fruit: str) -> str:
    """The fruit's best (else latest) two-sample accuracy and memorisation ratio, or why they are missing."""
    from fruitgan.models import store as model_store
    q = _quality_of(model_store.describe_model(workdir, model)["quality"].get(fruit, {}))
    acc, memo = q.get("two_sample_accuracy"), q.get("memorisation_ratio")
    if isinstance(acc, (int, float)):
        low, high = q.get("two_sample_low"), q.get("two_sample_high")
        two = f"two-sample accuracy {acc:.2f}" + (f" (95% interval {low:.2f}-{high:.2f})"
                                                  if isinstance(low, (int, float)) and isinstance(high, (int, float)) else "")
        if q.get("two_sample_note"):
            two += f": {q['two_sample_note']}"
    else:
        two = f"two-sample accuracy: {q.get('two_sample_note') or 'not measured (the run has not ended)'}"
    memo_text = (f"memorisation ratio {memo:.2f}" if isinstance(memo, (int, float))
                 else f"memorisation ratio: {q.get('memorisation_note') or 'not measured'}")
    gloss = " (two-sample accuracy 0.5 = indistinguishable from real)" if isinstance(acc, (int, float)) else ""
    return f"held-out test of the best checkpoint, on drawings that chose nothing: {two}; {memo_text}{gloss}"


def print_models(workdir: Path) -> int:
    """The table of models/models_index.json (rebuilt first when missing or stale)."""
    from fruitgan.models import store as model_store
    index = model_store.read_index(workdir)
    models = list(index["models"].values())
    notes = listing_notes(index)
    if not models:
        print(f"No trained models in {model_store.models_root(workdir)} yet.")
        print("Train one: python train_gan.py --dataset-version 1 --model-name v1   (build the dataset first with "
              "rawDataToImage.py and imageToNPZ.py, or run python run_pipeline.py for all of it)")
    else:
        print(models_table(models))
        print("\n(2-sample: accuracy of a small CNN telling the fakes from held-out real drawings, 0.5 = "
              "indistinguishable, 1.0 = trivially told apart, '-' = not enough real drawings; memo.: memorisation "
              "ratio, about 1 healthy, well below 1 = copying)")
        print("(quality: mean over the fruits of the best checkpoints' figures; recognised = share the classifier "
              "takes for the intended fruit, FID lower is better, coverage higher is better)")
    if notes:
        print("Not listed in full:\n" + "\n".join(notes))
    drawable = [m for m in models if m["fruits"]]
    if drawable:
        print(f"Draw new images: python generate_images.py {drawable[0]['name']} {drawable[0]['fruits'][0]} "
              "--num-images 16")
    return 0


def print_model(workdir: Path, name: str) -> int:
    """A model's fruits with their latest and best quality figures."""
    from fruitgan.metrics import evaluation as gan_evaluation
    from fruitgan.models import store as model_store
    info = model_store.describe_model(workdir, name)
    print(f"model {name}: dataset version {info['dataset_version'] or '-'}, {_fmt(info['resolution'], 'd')} px, "
          f"epochs {_fmt(info['epochs_done'], 'd')}/{_fmt(info['epochs_planned'], 'd')}, status {info['status'] or '-'}")
    rows = []
    for fruit in info["fruits"]:
        q = info["quality"].get(fruit, {})
        latest = dict(q.get("latest") or {})
        best = dict(q.get("best") or {})
        rows.append({"fruit": fruit, "checkpoint": f"latest (epoch {latest.get('epoch', '-')}, validation)",
                     **validation_as_plain(latest)})
        if best:
            rows.append({"fruit": fruit, "checkpoint": f"best (epoch {q.get('best_epoch', best.get('epoch', '-'))}, "
                         "test part)", **_quality_of(q)})
    for row in rows:
        row.pop("epoch", None)
        if "recognizability" in row or row.get("two_sample_accuracy") is not None:
            row["score"] = gan_evaluation.quality_score(row)
    if rows:
        print(gan_evaluation.format_metrics_table(rows))
    if info["saved_epochs"]:
        print(f"kept checkpoints (--checkpoint N): {', '.join(map(str, info['saved_epochs']))}")
    fruit = info["fruits"][0] if info["fruits"] else "apple"
    print(f"Draw new images: python generate_images.py {name} {fruit} --num-images 16")
    return 0


# --------------------------------------------------------------------------------------------- classify
def load_classifier_for(workdir: Path, meta: dict, fruits: Sequence[str], log=print):
    """The quality classifier of the model's dataset version (trained and cached if needed)."""
    import data_loader
    from fruitgan.metrics import evaluation as gan_evaluation
    from fruitgan.learn.milestones import classifier_inputs

    version = meta.get("dataset_version")
    if not version:
        raise UserError(f"model {meta['model']!r} does not record its dataset version, so there is no classifier "
                        "to ask; retrain it with train_gan.py")
    try:
        datasets = data_loader.load_version(workdir, str(version), fruits=list(fruits))
    except UserError as missing:
        try:
            return gan_evaluation.load_cached_classifier(workdir, str(version), meta["resolution"], fruits)
        except UserError:
            raise UserError(f"--classify needs dataset version {version} of the model: {missing}") from None
    images, augmented, sources = classifier_inputs(datasets)     # what the trainer gave it: the same cache
    train = lambda where: gan_evaluation.load_or_train_classifier(
        where, str(version), images, source_index_by_fruit=sources, augmented_by_fruit=augmented, log=log)
    cache = gan_evaluation.classifier_path(workdir, str(version), meta["resolution"])
    problem = cache_unwritable(cache.parent)
    if problem is None:
        return train(workdir)
    # Checked before training, not after: train in a throw-away work folder (seeded with the cache there is,
    # which is used when it still fits) rather than lose the work to a failed write at the end.
    with tempfile.TemporaryDirectory(prefix="fruitgan-classifier-") as scratch:
        scratch_cache = gan_evaluation.classifier_path(Path(scratch), str(version), meta["resolution"])
        if cache.is_file():
            scratch_cache.parent.mkdir(parents=True)
            scratch_cache.write_bytes(cache.read_bytes())
        classifier, info = train(Path(scratch))
    if info.get("trained"):
        log(f"note: the quality classifier was not cached ({cache.parent}: {problem}); it is trained again "
            "next time")
    return classifier, info


def cache_unwritable(folder: Path) -> Optional[str]:
    """Why no file can be written into ``folder`` (None: one can): a probe temp file, named like safe_files'
    temp files so that a leftover of a killed run is cleaned like theirs."""
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=f".probe.{owner_tag()}.", suffix=".tmp", dir=folder)
    except OSError as exc:
        return (exc.strerror or str(exc)).lower()
    os.close(fd)
    os.unlink(probe)
    return None


def classification_report(images: torch.Tensor, labels: Sequence[str], fruit: str, classifier) -> List[str]:
    """Lines: one per image (predicted fruit and its probability), then how many were taken for ``fruit``."""
    from fruitgan.metrics import evaluation as gan_evaluation
    pred, probs = gan_evaluation.predict(classifier, images)
    names = list(classifier.fruits)
    lines = [f"  {label}: {names[int(p)]:<11} {float(probs[i, int(p)]):.0%}" for i, (label, p) in enumerate(zip(labels, pred))]
    target = names.index(fruit)
    hits = int((pred == target).sum())
    n = len(labels)
    counts = torch.bincount(pred, minlength=len(names)).tolist()
    seen = ", ".join(f"{names[i]} {c}" for i, c in sorted(enumerate(counts), key=lambda x: -x[1]) if c)
    lines.append(f"recognised as {fruit}: {hits} of {n} ({hits / n:.0%}); mean probability of {fruit} "
                 f"{float(probs[:, target].mean()):.2f}, of the predicted fruit {float(probs.max(dim=1).values.mean()):.2f}")
    lines.append(f"predicted: {seen}")
    return lines


# --------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description="Show a table of the trained models, or draw new images with one.")
    p.add_argument("model", nargs="?", help="model name (models/model_<name>); omit to list the models")
    p.add_argument("fruit", nargs="?", help="fruit to draw; omit to see the model's fruits")
    p.add_argument("--num-images", type=cli_value(int_in_range(1, MAX_FILE_IMAGES), "--num-images"),
                   help=f"images to draw (default {DEFAULT_GRID_IMAGES}): at most {MAX_IMAGES} in a grid, up to "
                        f"{MAX_FILE_IMAGES} as files with --outdir alone (written in batches of {FILE_BATCH}); "
                        f"with --interpolate it counts ROWS, each of --steps frames (default {DEFAULT_INTERP_ROWS} "
                        f"rows, at most {MAX_ROWS})")
    p.add_argument("--seed", type=cli_value(SEED.parse, "--seed"),
                   help="noise seed: the same seed gives the same images (default: a random one, printed)")
    p.add_argument("--checkpoint", default="latest",
                   help="latest (default: the last finished epoch, checkpoints/latest.pt), milestone "
                        "(generator_<fruit>.pt: the last milestone's or the run's end), best, or an epoch number "
                        "with a kept checkpoint")
    p.add_argument("--interpolate", action="store_true",
                   help="rows of frames along a great circle between random noise vectors; --num-images then "
                        "counts rows and --steps the frames in each")
    p.add_argument("--steps", type=cli_value(int_in_range(MIN_STEPS, MAX_STEPS), "--steps"), default=DEFAULT_STEPS,
                   help=f"frames per interpolation row, ends included (default {DEFAULT_STEPS})")
    p.add_argument("--save", type=Path, help="write the grid to this PNG file instead of showing it")
    p.add_argument("--outdir", type=Path, help="write one PNG per image into this folder (no grid unless --save)")
    p.add_argument("--classify", action="store_true", help="print what the quality classifier makes of the images")
    p.add_argument("--beside-real", action="store_true",
                   help="show as many real drawings above the fakes: the model's held-out test drawings where it has "
                        "them, else its real training drawings (needs the model's dataset version in npzData/)")
    p.add_argument("--no-ema", action="store_true", help="use the raw generator weights even if a moving average was kept")
    p.add_argument("--workdir", type=Path, default=default_workdir(), help="folder holding models/ (default: the scripts' folder)")
    return p


def parse_config(argv: Optional[Sequence[str]]) -> GenerateConfig:
    from fruitgan.models import store as model_store
    args = build_parser().parse_args(argv)
    try:
        checkpoint = model_store.parse_checkpoint(args.checkpoint)
    except ValueError as exc:
        raise UserError(f"--checkpoint: {exc}") from None
    if args.interpolate and args.num_images is not None and args.num_images > MAX_ROWS:
        raise UserError(f"--num-images: with --interpolate it counts rows, at most {MAX_ROWS} (got {args.num_images})")
    files_only = args.outdir is not None and args.save is None and not args.classify
    if not args.interpolate and (args.num_images or 0) > MAX_IMAGES and not files_only:
        raise UserError(f"--num-images: a grid (or --classify) takes at most {MAX_IMAGES} images (got "
                        f"{args.num_images}); write more as files with --outdir DIR alone")
    if args.save is not None and args.save.suffix.lower() != ".png":
        raise UserError(f"--save: {args.save} should be a .png file name")
    if args.save is not None and args.save.is_dir():
        raise UserError(f"--save: {args.save} is a folder; give a file name ending in .png")
    if args.outdir is not None and args.outdir.exists() and not args.outdir.is_dir():
        raise UserError(f"--outdir: {args.outdir} is a file, not a folder")
    if not args.model and (args.fruit or args.classify or args.interpolate or args.save or args.outdir):
        raise UserError("give a model name first, e.g. generate_images.py v1 apple (run it alone to list the models)")
    if args.beside_real and (args.interpolate or args.outdir is not None):
        raise UserError("--beside-real goes with a grid of new images, not with --interpolate or --outdir")
    return GenerateConfig(workdir=args.workdir, model=args.model, fruit=args.fruit, num_images=args.num_images,
                          seed=args.seed, checkpoint=checkpoint, interpolate=args.interpolate, steps=args.steps,
                          save=args.save, outdir=args.outdir, classify=args.classify, use_ema=not args.no_ema,
                          beside_real=args.beside_real)


def output_tag(cfg: GenerateConfig, seed: int) -> str:
    """generated_<model>_<fruit>_seed<S>[_milestone|_best|_epochN][_interpolation]"""
    tag = f"generated_{cfg.model}_{cfg.fruit}_seed{seed}"
    if cfg.checkpoint != "latest":
        tag += f"_{cfg.checkpoint}" if isinstance(cfg.checkpoint, str) else f"_epoch{cfg.checkpoint}"
    return tag + ("_interpolation" if cfg.interpolate else "")


def draw(cfg: GenerateConfig) -> int:
    from fruitgan.models import store as model_store
    generator, meta = model_store.load_generator(cfg.workdir, cfg.model, cfg.fruit, cfg.checkpoint,
                                                 use_ema=cfg.use_ema)
    seed = cfg.seed if cfg.seed is not None else secrets.randbelow(SEED_MAX + 1)
    nz = generator.config.noise_dim
    epoch = meta.get("epoch")
    which = f"epoch-{meta['checkpoint']}" if isinstance(meta["checkpoint"], int) else meta["checkpoint"]
    n = (cfg.num_images or DEFAULT_INTERP_ROWS) * cfg.steps if cfg.interpolate else cfg.num_images or DEFAULT_GRID_IMAGES
    print(f"{cfg.model} {cfg.fruit}: {n} images, {which} checkpoint (epoch {epoch}"
          f"{', moving-average weights' if meta['used_ema'] else ''}), seed {seed}"
          f"{'' if cfg.seed is not None else f' (use --seed {seed} to get the same images again)'}")
    print(heldout_figures_line(cfg.workdir, cfg.model, cfg.fruit))
    tag = output_tag(cfg, seed)
    if cfg.outdir is not None and cfg.save is None and not cfg.classify and not cfg.interpolate:
        batches = (pictures.to_uint8(gan_model.generate(generator, z, GENERATE_BATCH))
                   for z in noise_batches(n, nz, seed, FILE_BATCH))
        write_image_files(batches, n, cfg.outdir, tag)        # no grid: any number, in bounded memory
        return 0
    if cfg.interpolate:
        rows = cfg.num_images or DEFAULT_INTERP_ROWS
        noise, columns = interpolation_noise(rows, cfg.steps, nz, seed), cfg.steps
        labels = [f"row {r + 1} frame {f + 1}" for r in range(rows) for f in range(cfg.steps)]
    else:
        noise, columns = sample_noise(n, nz, seed), math.ceil(math.sqrt(n))
        labels = [f"image {i + 1:>3}" for i in range(n)]
    images = gan_model.generate(generator, noise, GENERATE_BATCH)       # (N,1,R,R) on the CPU
    pixels = pictures.to_uint8(images)
    if cfg.outdir is not None:
        write_image_files([pixels], n, cfg.outdir, tag)
    grid = pictures.image_grid(pixels, columns, GRID_PAD, GRID_PAD_VALUE, MIN_TILE_PX)
    if cfg.beside_real:
        real, which = real_drawings_for(cfg.workdir, meta, cfg.fruit, n, seed)
        grid = stacked_grids([(f"real ({which})", pictures.image_grid(real, columns, GRID_PAD, GRID_PAD_VALUE,
                                                                      MIN_TILE_PX)), ("generated", grid)])
    if cfg.save is not None:
        print(f"saved {save_png(grid, cfg.save)}")
    elif cfg.outdir is None and not show_in_window(grid, f"{cfg.model} {cfg.fruit} seed {seed}"):
        path = save_png(grid, Path(cfg.workdir) / OUTPUTS_DIR / f"{tag}.png")
        print(f"saved {path}")
    if cfg.classify:
        from fruitgan.models import store as ms
        fruits = ms.open_model(cfg.workdir, cfg.model).fruits()
        classifier, info = load_classifier_for(cfg.workdir, meta, fruits)
        acc = info.get("heldout_accuracy")
        print(f"quality classifier (dataset version {meta['dataset_version']}, fruits {', '.join(classifier.fruits)}; "
              f"right on {_fmt(acc, '.0%')} of real drawings it never saw):")
        print("\n".join(classification_report(images, labels, cfg.fruit, classifier)))
    return 0


def real_drawings_for(workdir: Path, meta: dict, fruit: str, n: int, seed: int):
    """(n, R, R) uint8 real drawings of the model's dataset version, a seeded choice: its held-out test part
    (never trained on, never used to choose) where it has one, else its real drawings; and which they are."""
    import data_loader

    version = meta.get("dataset_version")
    if not version:
        raise UserError(f"model {meta['model']!r} does not record its dataset version; --beside-real needs it")
    ds = data_loader.load_fruit(workdir, str(version), fruit)     # a missing version: one line naming what exists
    index, which = (ds.test_index, "held-out test drawings") if ds.has_split else (ds.real_index, "training drawings")
    picked = index[torch.randperm(index.numel(), generator=torch.Generator().manual_seed(seed))[:n]]
    return ds.pixels[picked].numpy(), which


def stacked_grids(labelled: Sequence[tuple]):
    """PIL grids one above another, each under its label (a strip of text), on the grids' grey."""
    from PIL import Image, ImageDraw

    label_h, width = 14, max(g.size[0] for _, g in labelled)
    out = Image.new("L", (width, sum(g.size[1] + label_h for _, g in labelled)), GRID_PAD_VALUE)
    draw, y = ImageDraw.Draw(out), 0
    for label, g in labelled:
        draw.text((2, y + 1), label, fill=255)
        out.paste(g, (0, y + label_h))
        y += g.size[1] + label_h
    return out


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = parse_config(argv)
    if cfg.model is None:
        return print_models(cfg.workdir)
    if cfg.fruit is None:
        from fruitgan.models import store as model_store
        model_store.model_dir(cfg.workdir, cfg.model)         # unknown model: one line listing the models
        return print_model(cfg.workdir, cfg.model)
    return draw(cfg)


if __name__ == "__main__":
    sys.exit(run_main(main))

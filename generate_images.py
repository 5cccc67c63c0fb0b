"""Look at what a trained model draws.

    python generate_images.py                               a table of the models there are (models_index.json)
    python generate_images.py v1                            model v1's fruits and their quality figures
    python generate_images.py v1 apple --num-images 16      a grid of new apples (window, or a PNG when headless)
    python generate_images.py v1 apple --num-images 5000 --outdir fakes    5000 PNG files, written in batches
    python generate_images.py v1 apple --num-images 10 --interpolate    10 frames of one smooth transition
    python generate_images.py v1 apple --classify           ... and what the quality classifier makes of them
    python generate_images.py v1 apple --beside-real        ... with as many real drawings above them

The same --seed always gives the same images (and a byte-identical PNG). Without a display the grid is written
to outputs/generated_<model>_<fruit>_seed<S>.png under the work folder. The quality figures printed are those
measured on the checkpoint drawn.
"""
from __future__ import annotations

if __name__ == "__main__":   # first of all: Ctrl+C while the imports below (torch) load exits 130 too
    from fruitgan.util.user_io import interrupt_exits_130
    interrupt_exits_130()

import argparse
import contextlib
import math
import os
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Iterable, Iterator, List, Optional, Sequence

import numpy as np
import torch

import gan_model
from fruitgan.util import pictures
from fruitgan.data.heldout_split import validation_as_plain
from fruitgan.models import folder as model_folder, index as model_index
from fruitgan.models import loading as model_loading, reported as model_reported
from fruitgan.report.runs import number
from fruitgan.util.safe_files import atomic_save_image, clean_stale_temp, default_workdir, owner_tag
from fruitgan.util.settings import SEED, SEED_MAX
from fruitgan.util.user_io import ArgumentParser, UserError, cli_value, int_in_range, run_main

MAX_IMAGES = 1024            # a grid bigger than this is no longer something to look at
MAX_FILE_IMAGES = 100_000    # --outdir alone: enough for a dataset, not enough to fill a disk by a typo
FILE_BATCH = 256             # images generated and written per step with --outdir (bounded memory)
DEFAULT_GRID_IMAGES = 16
TRANSITION_COLUMNS = 16      # frames per grid row of an --interpolate transition (read left to right, top to bottom)
MIN_TILE_PX = 64             # small images are enlarged (nearest neighbour, whole factor) to at least this
GRID_PAD = 1                 # pixels between tiles, before enlarging
GRID_PAD_VALUE = 96          # grey: separates the black tile backgrounds
SLERP_EPS = 1e-6             # nearly parallel endpoints: fall back to a straight line
OUTPUTS_DIR = "outputs"
# Tk first: when the display cannot be reached it raises an error we can catch (Qt aborts the process).
INTERACTIVE_BACKENDS = ("TkAgg", "QtAgg", "GTK4Agg", "GTK3Agg", "MacOSX", "WXAgg")


# --------------------------------------------------------------------------------------------- noise and images
def sample_noise(n: int, noise_dim: int, seed: int) -> torch.Tensor:
    """(n, nz) standard normal noise from its own seeded stream (the same seed, the same noise)."""
    return torch.randn(n, noise_dim, generator=torch.Generator().manual_seed(seed))


def slerp(z0: torch.Tensor, z1: torch.Tensor, t: float) -> torch.Tensor:
    """Spherical interpolation (B,nz),(B,nz) -> (B,nz): z0 at t=0, z1 at t=1 exactly. Gaussian noise lives near a
    sphere: a straight line cuts through its inside, where images are washed out."""
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


def interpolation_noise(frames: int, noise_dim: int, seed: int) -> torch.Tensor:
    """(frames, nz): one walk along the great circle from z0 to z1, the two seeded noise vectors (ends included)."""
    ends = sample_noise(2, noise_dim, seed)
    return torch.cat([slerp(ends[:1], ends[1:], i / (frames - 1)) for i in range(frames)])


def noise_batches(n: int, noise_dim: int, seed: int, batch: int) -> Iterator[torch.Tensor]:
    """sample_noise(n, ...) in slices of ``batch`` rows, drawn one after another from the same seeded stream."""
    gen = torch.Generator().manual_seed(seed)
    for start in range(0, n, batch):
        yield torch.randn(min(batch, n - start), noise_dim, generator=gen)


def write_image_files(batches: Iterable[np.ndarray], total: int, outdir: Path, tag: str) -> None:
    """One PNG per image, <tag>_0001.png ... (more digits past 9999), from (B,R,R) uint8 batches, each atomically."""
    from PIL import Image
    from tqdm import tqdm
    digits = max(4, len(str(total)))
    written = 0
    with tqdm(total=total, unit="image", desc="writing", disable=None) as bar:
        for pixels in batches:
            for frame in pixels:
                written += 1
                path = outdir / f"{tag}_{written:0{digits}d}.png"
                atomic_save_image(Image.fromarray(np.ascontiguousarray(frame)), path)
            bar.update(len(pixels))
    print(f"wrote {written} images to {outdir}")


def show_in_window(image, title: str) -> bool:
    """Show the image in a matplotlib window if there is a display and a GUI backend works; False (never raises)
    otherwise, and the caller saves a PNG instead."""
    wanted = os.environ.get("MPLBACKEND")
    no_display = not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))
    # MPLBACKEND=Agg (say): the user asked for no window
    if no_display or (wanted and wanted.lower() not in {b.lower() for b in INTERACTIVE_BACKENDS}):
        return False
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
        with contextlib.suppress(Exception):
            import matplotlib.pyplot as plt
            plt.close("all")
            matplotlib.use(previous, force=True)
        return False


# --------------------------------------------------------------------------------------------- listing
DAMAGED = "damaged"          # the status the models index gives an entry it could not read
MODEL_HEADER = ("model", "created", "dataset", "px", "fruits", "epochs", "status")
QUALITY_HEADER = ("model", "fruit", "checkpoint", "2-sample", "people", "sessions", "memo.", "recognised", "FID",
                  "cover.")
# What each column (and each part a row names) means: printed under a table for those it shows.
LEGEND = {
    "created": "when the run started (UTC); dataset: the dataset version it trained on; px: image size",
    "epochs": "done/planned; status: running, finished, interrupted, ...",
    "checkpoint": "the one measured (the model table shows each fruit's best, else its last milestone)",
    "2-sample": "a small CNN's accuracy telling fakes from held-out real drawings (95% interval; +-: its half "
                "width): 0.5 = indistinguishable, 1.0 = told apart every time",
    "people": "share of drawings people judged right (real or fake) in spot-the-fake sessions, pooled (95% interval "
              "bootstrapped over sessions): 0.5 = guessing, like 2-sample; '-' = no one took it (spot_the_fake.py)",
    "sessions": "the spot-the-fake sessions pooled in people",
    "memo.": "memorisation ratio, fakes' distance to the nearest training drawing over real ones': 1 ok, << 1 copies",
    "recognised": "share of fakes the classifier takes for the intended fruit; conf.: its mean probability of it",
    "FID": "Frechet distance of fakes to real drawings in the classifier's features: lower is better",
    "prec.": "precision, share of fakes among the real drawings' nearest neighbours; recall: the reverse",
    "density": "real drawings' neighbourhoods holding a fake, per fake and neighbour: about 1 when fakes look real",
    "cover.": "coverage, share of real drawings with a fake among their nearest neighbours: low = mode collapse",
    "validation part": "held-out drawings that chose the best checkpoint, by a quicker check that reads low",
    "test part": "held-out drawings that chose nothing: the figure to report",
}
NOT_MEASURED = "'-' = not measured (python generate_images.py MODEL says why)"


def _fmt(value, spec: str) -> str:
    """A figure as ``spec``, '-' when it is missing or not a number (records may be hand-edited)."""
    return format(value, spec) if number(value) and (spec != "d" or isinstance(value, int)) else "-"


def _with_interval(figures: dict, prefix: str) -> str:
    """<prefix>accuracy with its interval, '0.80 (0.75-0.85)'; '0.80' without one; '-' without a figure."""
    value, low, high = (figures.get(prefix + k) for k in ("accuracy", "low", "high"))
    return _fmt(value, ".2f") + (f" ({low:.2f}-{high:.2f})" if all(map(number, (value, low, high))) else "")


def text_table(rows: Sequence[Sequence[str]]) -> str:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows)


def legend(*tables: str) -> str:
    """The LEGEND lines of the columns in the tables' headers and of the parts their rows name; what '-' means."""
    words = {w for t in tables for w in t.splitlines()[0].split()}
    lines = [f"  {key}: {text}" for key, text in LEGEND.items()
             if key in words or (" " in key and any(key in t for t in tables))]
    return "\n".join(lines + [f"  {NOT_MEASURED}"])


def quality_rows(workdir: Path, m: dict) -> List[Sequence[str]]:
    """One row per fruit of index entry ``m``: its reported figures beside the people's spot-the-fake figure."""
    from fruitgan.people.results import pooled_human_figure
    rows, folder = [], model_folder.models_root(workdir) / model_folder.model_folder_name(m["name"])
    for fruit in m["fruits"]:
        q = m["quality"].get(fruit) or {}
        rec, people = model_reported.reported_figures(q), pooled_human_figure(folder, fruit) or {}
        measured = (f"best (epoch {_fmt(q.get('best_epoch'), 'd')})" if q.get("best") else
                    f"last milestone (epoch {_fmt(rec.get('epoch'), 'd')})" if rec else "-")
        rows.append((m["name"], fruit, measured, _with_interval(rec, "two_sample_"), _with_interval(people, ""),
                     _fmt(people.get("sessions"), "d"), _fmt(rec.get("memorisation_ratio"), ".2f"),
                     _fmt(rec.get("recognizability"), ".0%"), _fmt(rec.get("fid"), ".2f"),
                     _fmt(rec.get("coverage"), ".2f")))
    return rows


def model_row(m: dict) -> Sequence[str]:
    epochs = f"{_fmt(m.get('epochs_done'), 'd')}/{_fmt(m.get('epochs_planned'), 'd')}"
    return (m["name"], str(m.get("created") or "-")[:16].replace("T", " "), str(m.get("dataset_version") or "-"),
            _fmt(m.get("resolution"), "d"), ",".join(m["fruits"]) or "-", epochs, str(m.get("status") or "-"))


def print_models(workdir: Path) -> int:
    """The models of models/models_index.json (rebuilt first when missing or stale), then each fruit's figures; a
    model that cannot be read is left out, with a line saying why."""
    index = model_index.read_index(workdir)
    notes = [f"  {m['name']}: {'not listed: ' if m.get('status') == DAMAGED else ''}{'; '.join(m['problems'])}"
             for m in index["models"].values() if m.get("problems")]
    notes += [f"  models/{odd['entry']}: skipped ({odd['why']})" for odd in index.get("skipped", [])]
    models, table, quality = [], [MODEL_HEADER], [QUALITY_HEADER]
    for m in (m for m in index["models"].values() if m.get("status") != DAMAGED):
        try:           # an unreadable info/ or a hand-edited index entry: that model is left out, the rest shown
            rows, row = quality_rows(workdir, m), model_row(m)
        except (OSError, UserError, LookupError, TypeError, ValueError, AttributeError) as exc:
            why = exc if isinstance(exc, (OSError, UserError)) else f"a damaged index entry: {type(exc).__name__}"
            notes.append(f"  {m['name']}: not listed ({why})")
            continue
        models.append(m)
        table.append(row)
        quality += rows
    if not models:
        print(f"No trained models in {model_folder.models_root(workdir)} yet.")
        print("Train one: python train_gan.py --dataset-version 1 --model-name v1   (build the dataset first with "
              "rawDataToImage.py and imageToNPZ.py, or run python run_pipeline.py for all of it)")
    else:
        tables = (text_table(table), text_table(quality))
        print(f"{tables[0]}\n\n{tables[1]}\n\n{legend(*tables)}")
    if notes:
        print("Not listed in full:\n" + "\n".join(notes))
    drawable = [m for m in models if m["fruits"]]
    if drawable:
        print(f"Draw new images: python generate_images.py {drawable[0]['name']} {drawable[0]['fruits'][0]} "
              "--num-images 16")
    return 0


def measured_checkpoints(q: dict) -> List[dict]:
    """A fruit's measured checkpoints, {"label", "epoch", "best", "figures"}: its last milestone (held-out
    figures on the validation part) and its best (on the test part); a part is named only where it measured."""
    out = []
    for best, rec in ((False, q.get("latest")), (True, q.get("best"))):
        if rec:
            figures = model_reported.reported_figures(q) if best else validation_as_plain(rec)
            epoch = q["best_epoch"] if best and q.get("best_epoch") is not None else rec.get("epoch")
            measured = number(figures.get("two_sample_accuracy"))
            part = (", test part" if best else ", validation part") if measured else ""
            out.append({"label": f"{'best' if best else 'last milestone'} (epoch {_fmt(epoch, 'd')}{part})",
                        "epoch": epoch, "best": best, "figures": figures})
    return out


def drawn_figures_line(workdir: Path, model: str, fruit: str, meta: dict) -> str:
    """The quality figures measured on the checkpoint drawn (its epoch's milestone, the best's when drawing it),
    held-out tests first; or a line saying none were (or that the records cannot be read: the weights could)."""
    try:
        measured = measured_checkpoints(model_reported.describe_model(workdir, model)["quality"].get(fruit, {}))
    except OSError as exc:
        return f"quality of this checkpoint: its records cannot be read ({exc.filename}: {exc.strerror})"
    same = [m for m in measured if (m["best"] if meta["checkpoint"] == "best"
                                    else meta["epoch"] is not None and m["epoch"] == meta["epoch"])]
    if not same:
        return (f"quality of this checkpoint: none was measured for epoch {_fmt(meta['epoch'], 'd')} (figures are "
                f"measured at milestones; measured: {', '.join(m['label'] for m in measured) or 'none'})")
    q = same[-1]["figures"]
    acc, memo = q.get("two_sample_accuracy"), q.get("memorisation_ratio")
    two = (f"two-sample accuracy {_with_interval(q, 'two_sample_')} (0.5 = indistinguishable from real)" if number(acc)
           else f"two-sample accuracy: {q.get('two_sample_note') or 'not measured'}")
    memo = (f"memorisation ratio {memo:.2f}" if number(memo)
            else f"memorisation ratio: {q.get('memorisation_note') or 'not measured'}")
    seen = [f"{name} {_fmt(q.get(key), spec)}" for key, name, spec in
            (("recognizability", "recognised", ".0%"), ("fid", "FID", ".2f")) if number(q.get(key))]
    return f"quality of this checkpoint, {same[-1]['label']}: {'; '.join([two, memo] + seen)}"


def print_model(workdir: Path, name: str) -> int:
    """A model's fruits with the figures of their last milestone and best checkpoints."""
    from fruitgan.metrics import scores
    info = model_reported.describe_model(workdir, name)
    print(f"model {name}: dataset version {info['dataset_version'] or '-'}, {_fmt(info['resolution'], 'd')} px, "
          f"epochs {_fmt(info['epochs_done'], 'd')}/{_fmt(info['epochs_planned'], 'd')}, status {info['status'] or '-'}")
    shown = {k for k, _, _ in scores.TABLE_COLUMNS} - {"score"}      # a checkpoint's figures, not its ranking
    rows = [{"fruit": fruit, "checkpoint": m["label"],
             **{k: v for k, v in m["figures"].items() if k in shown and number(v)}}
            for fruit in info["fruits"] for m in measured_checkpoints(info["quality"].get(fruit, {}))]
    if rows:
        table = scores.format_metrics_table(rows)
        print(f"{table}\n{legend(table)}")
    if info["saved_epochs"]:
        print(f"kept checkpoints (--checkpoint N): {', '.join(map(str, info['saved_epochs']))}")
    print(f"Draw new images: python generate_images.py {name} {(info['fruits'] or ['apple'])[0]} --num-images 16")
    return 0


# --------------------------------------------------------------------------------------------- classify
def load_classifier_for(workdir: Path, meta: dict, fruits: Sequence[str], log=print):
    """The quality classifier of the model's dataset version (trained and cached if needed)."""
    import data_loader
    from fruitgan.metrics import classifier as fruit_classifier
    from fruitgan.learn.milestones import classifier_inputs
    version = meta.get("dataset_version")
    if not version:
        raise UserError(f"model {meta['model']!r} does not record its dataset version, so there is no classifier "
                        "to ask; retrain it with train_gan.py")
    try:
        datasets = data_loader.load_version(workdir, str(version), fruits=list(fruits))
    except UserError as missing:
        try:
            return fruit_classifier.load_cached_classifier(workdir, str(version), meta["resolution"], fruits)
        except UserError:
            raise UserError(f"--classify needs dataset version {version} of the model: {missing}") from None
    images, augmented, sources = classifier_inputs(datasets)     # what the trainer gave it: the same cache
    train = lambda where: fruit_classifier.load_or_train_classifier(
        where, str(version), images, source_index_by_fruit=sources, augmented_by_fruit=augmented, log=log)
    cache = fruit_classifier.classifier_path(workdir, str(version), meta["resolution"])
    problem = cache_unwritable(cache.parent)
    if problem is None:
        return train(workdir)
    # Checked before training, not after: train in a throw-away work folder (seeded with the cache there is,
    # which is used when it still fits) rather than lose the work to a failed write at the end.
    with tempfile.TemporaryDirectory(prefix="fruitgan-classifier-") as scratch:
        scratch_cache = fruit_classifier.classifier_path(Path(scratch), str(version), meta["resolution"])
        if cache.is_file():
            scratch_cache.parent.mkdir(parents=True)
            scratch_cache.write_bytes(cache.read_bytes())
        classifier, info = train(Path(scratch))
    if info.get("trained"):
        log(f"note: the quality classifier was not cached ({cache.parent}: {problem}); it is trained again "
            "next time")
    return classifier, info


def cache_unwritable(folder: Path) -> Optional[str]:
    """Why no file can be written into ``folder`` (None: one can), by a probe named like safe_files' temp files
    (so a killed run's leftover is cleaned like theirs)."""
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
    from fruitgan.metrics.classifier import predict
    pred, probs = predict(classifier, images)
    names = list(classifier.fruits)
    lines = [f"  {label}: {names[int(p)]:<11} {float(probs[i, int(p)]):.0%}"
             for i, (label, p) in enumerate(zip(labels, pred))]
    target, n = names.index(fruit), len(labels)
    hits = int((pred == target).sum())
    counts = torch.bincount(pred, minlength=len(names)).tolist()
    seen = ", ".join(f"{names[i]} {c}" for i, c in sorted(enumerate(counts), key=lambda x: -x[1]) if c)
    return lines + [f"recognised as {fruit}: {hits} of {n} ({hits / n:.0%}); mean probability of {fruit} "
                    f"{float(probs[:, target].mean()):.2f}, of the predicted fruit "
                    f"{float(probs.max(dim=1).values.mean()):.2f}", f"predicted: {seen}"]


# --------------------------------------------------------------------------------------------- main
def build_parser() -> argparse.ArgumentParser:
    p = ArgumentParser(description="Show a table of the trained models, or draw new images with one; the tables "
                                   "of models explain their columns underneath.")
    p.add_argument("model", nargs="?", help="model name (models/model_<name>); omit to list the models")
    p.add_argument("fruit", nargs="?", help="fruit to draw; omit to see the model's fruits")
    p.add_argument("--num-images", type=cli_value(int_in_range(1, MAX_FILE_IMAGES), "--num-images"),
                   help=f"images to draw (default {DEFAULT_GRID_IMAGES}): at most {MAX_IMAGES} in a grid, up to "
                        f"{MAX_FILE_IMAGES} as files with --outdir alone (written in batches of {FILE_BATCH}); "
                        "with --interpolate the frames of the one transition (at least 2)")
    p.add_argument("--seed", type=cli_value(SEED.parse, "--seed"),
                   help="noise seed: the same seed gives the same images (default: a random one, printed)")
    p.add_argument("--checkpoint", default="latest",
                   help="latest (default: the last finished epoch, checkpoints/latest.pt), milestone "
                        "(generator_<fruit>.pt: the last milestone's or the run's end), best, or an epoch number "
                        "with a kept checkpoint")
    p.add_argument("--interpolate", action="store_true",
                   help="--num-images frames of one smooth transition between two noise vectors drawn from the "
                        "seed, by spherical interpolation (along the great circle between them, where Gaussian noise "
                        f"lies; a straight line would pass through washed-out images), {TRANSITION_COLUMNS} frames "
                        "a row, read left to right")
    p.add_argument("--save", type=Path, help="write the grid to this PNG file instead of showing it")
    p.add_argument("--outdir", type=Path, help="write one PNG per image into this folder (no grid unless --save)")
    p.add_argument("--classify", action="store_true", help="print what the quality classifier makes of the images")
    p.add_argument("--beside-real", action="store_true",
                   help="show as many real drawings above the fakes: the model's held-out test drawings where it has "
                        "them, else its real training drawings (needs the model's dataset version in npzData/)")
    p.add_argument("--no-ema", action="store_true",
                   help="use the raw generator weights even if a moving average was kept")
    p.add_argument("--workdir", type=Path, default=default_workdir(),
                   help="folder holding models/ (default: the scripts' folder)")
    return p


def parse_config(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    args = build_parser().parse_args(argv)
    try:
        args.checkpoint = model_loading.parse_checkpoint(args.checkpoint)
    except ValueError as exc:
        raise UserError(f"--checkpoint: {exc}") from None
    if args.interpolate and args.num_images == 1:
        raise UserError("--num-images: a transition needs at least 2 frames (its two ends)")
    args.files_only = args.outdir is not None and args.save is None and not args.classify and not args.interpolate
    if (args.num_images or 0) > MAX_IMAGES and not args.files_only:
        raise UserError(f"--num-images: a grid, a transition or --classify takes at most {MAX_IMAGES} images (got "
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
    return args


def output_tag(cfg: argparse.Namespace, seed: int) -> str:
    """generated_<model>_<fruit>_seed<S>[_milestone|_best|_epochN][_interpolation]"""
    tag = f"generated_{cfg.model}_{cfg.fruit}_seed{seed}"
    if cfg.checkpoint != "latest":
        tag += f"_{cfg.checkpoint}" if isinstance(cfg.checkpoint, str) else f"_epoch{cfg.checkpoint}"
    return tag + ("_interpolation" if cfg.interpolate else "")


def load_drawn(cfg: argparse.Namespace):
    """load_generator's (generator, meta); a file of a structure the loader does not check is one line too."""
    try:
        return model_loading.load_generator(cfg.workdir, cfg.model, cfg.fruit, cfg.checkpoint, use_ema=not cfg.no_ema)
    except (AttributeError, KeyError, TypeError, ValueError, IndexError, RuntimeError) as exc:
        raise UserError(f"model {cfg.model!r}: the {cfg.fruit} file of --checkpoint {cfg.checkpoint} does not hold "
                        f"what this suite writes ({type(exc).__name__}); it is damaged or was edited by hand: use "
                        "another --checkpoint or train again") from None


def clean_leftovers(cfg: argparse.Namespace) -> None:
    """Remove the temp files that killed runs (kill -9) left in the folders this run writes into."""
    for folder in (cfg.outdir, cfg.save and cfg.save.parent, Path(cfg.workdir) / OUTPUTS_DIR):
        if folder and (gone := clean_stale_temp(Path(folder), recursive=False)):
            print(f"removed {len(gone)} temporary file(s) a killed run left in {folder}")


def draw(cfg: argparse.Namespace) -> int:
    generator, meta = load_drawn(cfg)
    clean_leftovers(cfg)
    seed = cfg.seed if cfg.seed is not None else secrets.randbelow(SEED_MAX + 1)
    nz, n = generator.config.noise_dim, cfg.num_images or DEFAULT_GRID_IMAGES
    which = f"epoch-{meta['checkpoint']}" if isinstance(meta["checkpoint"], int) else meta["checkpoint"]
    what = f"{n} frames of one transition (spherical interpolation)" if cfg.interpolate else f"{n} images"
    print(f"{cfg.model} {cfg.fruit}: {what}, {which} checkpoint (epoch {meta.get('epoch')}"
          f"{', moving-average weights' if meta['used_ema'] else ''}), seed {seed}"
          f"{'' if cfg.seed is not None else f' (use --seed {seed} to get the same images again)'}")
    print(drawn_figures_line(cfg.workdir, cfg.model, cfg.fruit, meta))
    tag = output_tag(cfg, seed)
    if cfg.files_only:
        batches = (pictures.to_uint8(gan_model.generate(generator, z))
                   for z in noise_batches(n, nz, seed, FILE_BATCH))
        write_image_files(batches, n, cfg.outdir, tag)        # no grid: any number, in bounded memory
        return 0
    if cfg.interpolate:
        noise, columns, kind = interpolation_noise(n, nz, seed), min(n, TRANSITION_COLUMNS), "frame"
    else:
        noise, columns, kind = sample_noise(n, nz, seed), math.ceil(math.sqrt(n)), "image"
    labels = [f"{kind} {i + 1:>3}" for i in range(n)]
    images = gan_model.generate(generator, noise)       # (N,1,R,R) on the CPU
    pixels = pictures.to_uint8(images)
    if cfg.outdir is not None:
        write_image_files([pixels], n, cfg.outdir, tag)
    grid = pictures.image_grid(pixels, columns, GRID_PAD, GRID_PAD_VALUE, MIN_TILE_PX)
    if cfg.beside_real:
        real, which = real_drawings_for(cfg.workdir, meta, cfg.fruit, n, seed)
        grid = stacked_grids([(f"real ({which})", pictures.image_grid(real, columns, GRID_PAD, GRID_PAD_VALUE,
                                                                      MIN_TILE_PX)), ("generated", grid)])
    if cfg.save is not None:
        print(f"saved {atomic_save_image(grid, cfg.save)}")
    elif cfg.outdir is None and not show_in_window(grid, f"{cfg.model} {cfg.fruit} seed {seed}"):
        print(f"saved {atomic_save_image(grid, Path(cfg.workdir) / OUTPUTS_DIR / f'{tag}.png')}")
    if cfg.classify:
        fruits = model_folder.open_model(cfg.workdir, cfg.model).fruits()
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
    try:
        if cfg.model is None:
            return print_models(cfg.workdir)
        if cfg.fruit is None:
            model_folder.model_dir(cfg.workdir, cfg.model)         # unknown model: one line listing the models
            return print_model(cfg.workdir, cfg.model)
        return draw(cfg)
    except OSError as exc:          # e.g. a model folder whose info/ cannot be read: one line, not a traceback
        if isinstance(exc, BrokenPipeError):
            raise                   # run_main's: output piped into a reader that stopped
        raise UserError(f"{exc.filename or 'a file'}: {(exc.strerror or str(exc)).lower()}; check that it can be "
                        "read (its permissions) and run again") from None


if __name__ == "__main__":
    sys.exit(run_main(main))

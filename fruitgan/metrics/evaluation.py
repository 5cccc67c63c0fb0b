"""How real do the fakes look? Quality figures for generated fruit drawings, measured by small networks.

A GAN's losses say little about its images, so at milestone epochs the trainer asks this module:

* **two_sample_test** (the headline figure): a small CNN trained to tell generated images from REAL drawings
  held out of the GAN's training, its accuracy measured on images it did not train on (0.5 = indistinguishable,
  1.0 = trivially told apart); "not enough real drawings" instead of a number when the held-out split is small;
* **memorisation_ratio**: how close generated images sit to their nearest training drawing, relative to how
  close new real drawings sit (about 1 healthy, well below 1 = copying);

* **recognizability**: the share of generated images that a classifier trained on the REAL drawings of the
  dataset version calls the intended fruit (it is blind to variety: one perfect apple repeated scores 100%);
* **fid**: the Fréchet distance between real and generated images in the classifier's feature space (its
  penultimate layer, FEATURE_DIM numbers per image), computed by torchmetrics' FrechetInceptionDistance given
  these features through a custom feature extractor (so no Inception network and no download is needed);
* **precision / recall** (Kynkäänniemi et al. 2019) and **density / coverage** (Naeem et al. 2020): k-nearest-
  neighbour manifolds in the same feature space. Precision/density ask "do the fakes lie where real drawings
  are?", recall/coverage ask "are all kinds of real drawings reached?": mode collapse shows as low recall and
  coverage while recognizability stays high.

Recognisability needs a choice between fruits: load_or_train_recognizer trains the classifier on every fruit
with drawings in rawData/ (the dataset's held-out drawings excluded), and a one-class classifier's verdicts are
refused (the figure is left out, with a "recognizability_note" saying why).

The classifier is trained once per dataset version and resolution (a few seconds on a CPU) and cached in
models/evaluators/classifier_version<V>_<R>px.pt, with a hash of its training data so a changed dataset
retrains it. Its held-out accuracy on REAL drawings it never saw (augmented copies of those drawings are kept
out of training too) tells how far its verdicts can be trusted.

Features are divided by one scale fixed at training time (the spread of the real features), so Fréchet
distances are in units of "real-drawing variance" and comparable between runs of the same dataset.
"""
from __future__ import annotations

import contextlib
import functools
import hashlib
import math
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, Mapping, Optional, Sequence, Tuple

import torch
import torch.nn as nn
import torch.nn.functional as F

from fruitgan.models import store as model_store
from fruitgan.util import pictures
from fruitgan.util.safe_files import atomic_torch_save
from fruitgan.util.user_io import UserError

CLASSIFIER_FORMAT = "fruitgan-classifier/1"
FEATURE_DIM = 64           # penultimate width: small, because a fruit may have only 25-40 real drawings
CLASSIFIER_WIDTH = 16      # channels of the first convolution (then x2, x4)
WORK_RESOLUTION = 32       # larger inputs are area-averaged down to this first: cost stays flat for 64-128 px
POOL_GRID = 3              # adaptive average pooling to 3x3 before the feature layer: any input size works
HEAD_DROPOUT = 0.3
NEAREST_K = 5              # k of the k-NN manifolds (Naeem et al. use 5)
EVAL_BATCH = 512           # images per forward pass when measuring
REFERENCE_SEED = 12345     # fixed split of the real drawings into two halves for the real-vs-real reference
NOISE_SEED = 54321         # uniform-noise anchor in reference()
MIN_FEATURE_SCALE = 1e-6
# The classifier's layers are too small to gain from several CPU threads, and on a CPU shared with other
# work extra threads spin-wait: measured 14 ms vs 250 ms per training step on 2 busy cores.
CLASSIFIER_CPU_THREADS = 1
# quality_score weights (see its docstring)
SCORE_FID_WEIGHT = 0.25
HEALTHY_MEMORISATION = 0.95       # memorisation ratio below this costs score (the target: >= 0.95)
SCORE_MEMORISATION_WEIGHT = 1.0   # per unit below it: a copying generator (ratio 0) never wins on a ~0.5 accuracy
# Recognisability needs a choice between fruits: a one-class classifier calls everything that fruit.
MIN_RECOGNIZER_FRUITS = 2
MIN_RECOGNIZER_DRAWINGS = 10      # a fruit with fewer real drawings in rawData/ is left out of the recogniser
RECOGNIZER_MAX_PER_FRUIT = 500    # drawings rendered per fruit (memory and time stay bounded; file order)
ONE_CLASS_NOTE = ("not enough fruits to judge recognisability: the classifier knows only {fruits}; "
                  "put another fruit's Quick, Draw! drawings in rawData/")


@dataclass(frozen=True)
class ClassifierTrainConfig:
    """How the quality classifier is trained; part of the cache hash, so changing it retrains."""

    heldout_fraction: float = 0.2     # share of each fruit's REAL drawings kept out of training to test it
    steps: int = 300                  # optimizer steps (a fixed budget: a few seconds on CPU whatever the data size)
    batch_size: int = 64              # images per step, drawn with every fruit equally likely
    lr: float = 3e-3                  # AdamW learning rate (cosine-decayed to 0)
    weight_decay: float = 1e-3        # AdamW weight decay
    label_smoothing: float = 0.1      # softer targets: less over-confident on a small sample
    max_rotation_deg: float = 10.0    # random rotation of each training image ...
    max_scale_change: float = 0.1     # ... random zoom (+-10%) ...
    max_shift: float = 0.08           # ... random shift (fraction of the half-width) ...
    flip: bool = True                 # ... and random left-right mirroring: a mirrored fruit is the same fruit


# --------------------------------------------------------------------------------------------- the network
def to_work_resolution(x: torch.Tensor) -> torch.Tensor:
    """(B,1,R,R) -> (B,1,r,r) with r = min(R, WORK_RESOLUTION): larger images are area-averaged down."""
    if x.shape[-1] > WORK_RESOLUTION or x.shape[-2] > WORK_RESOLUTION:
        return F.adaptive_avg_pool2d(x, WORK_RESOLUTION)
    return x


class FruitClassifier(nn.Module):
    """Small CNN: (B,1,R,R) in [-1,1], any R from 16 to 256 -> logits (B, F) over ``fruits``.

    ``features`` (the penultimate layer, divided by ``feature_scale``) is the space where FID and the
    k-NN metrics are measured.
    """

    def __init__(self, fruits: Sequence[str], feature_dim: int = FEATURE_DIM, width: int = CLASSIFIER_WIDTH):
        super().__init__()
        self.fruits = tuple(fruits)
        self.feature_dim = feature_dim
        self.width = width
        self.num_features = feature_dim           # torchmetrics reads this from a custom feature extractor
        c = width
        # Three stride-2 convolutions: cheap enough to run at every milestone on a CPU.
        self.body = nn.Sequential(
            nn.Conv2d(1, c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(c), nn.ReLU(),           # (B,c,r/2,r/2)
            nn.Conv2d(c, 2 * c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(2 * c), nn.ReLU(),   # (B,2c,r/4,r/4)
            nn.Conv2d(2 * c, 4 * c, 3, stride=2, padding=1, bias=False), nn.BatchNorm2d(4 * c), nn.ReLU(),  # r/8
            nn.AdaptiveAvgPool2d(POOL_GRID),                                                 # (B, 4c, 3, 3)
            nn.Flatten(),                                                                    # (B, 4c*9)
        )
        self.embed = nn.Sequential(nn.Linear(4 * c * POOL_GRID * POOL_GRID, feature_dim), nn.ReLU())  # (B, FD)
        self.head = nn.Sequential(nn.Dropout(HEAD_DROPOUT), nn.Linear(feature_dim, len(self.fruits)))  # (B, F)
        # One number fixed after training (std of real features): makes distances unit-free. 1 until then.
        self.register_buffer("feature_scale", torch.ones(()))
        self.heldout_accuracy_by_fruit: Dict[str, Optional[float]] = {}   # set by load_or_train_classifier

    def raw_features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,1,R,R) -> (B, FEATURE_DIM) before scaling."""
        return self.embed(self.body(to_work_resolution(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,1,R,R) -> (B, FEATURE_DIM): the space of FID, precision/recall, density/coverage."""
        return self.raw_features(x) / self.feature_scale

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats * self.feature_scale)          # (B, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.raw_features(x))                # (B, F)


class PrecomputedFeatures(nn.Module):
    """torchmetrics' FID feature extractor for features already computed by ``FruitClassifier.features``.

    The evaluator computes each image's features once and uses them for the classifier's verdict, the k-NN
    metrics and FID alike; handing them to FrechetInceptionDistance through this pass-through (with the
    ``num_features`` it asks a custom extractor for) avoids a second forward pass.
    """

    def __init__(self, num_features: int):
        super().__init__()
        self.num_features = num_features

    def forward(self, feats: torch.Tensor) -> torch.Tensor:
        return feats                                          # (B, FEATURE_DIM) -> (B, FEATURE_DIM)


# --------------------------------------------------------------------------------------------- training
def classifier_path(workdir: Path, dataset_version: str, resolution: int) -> Path:
    """models/evaluators/classifier_version<V>_<R>px.pt (model_store owns the models/ tree)."""
    return model_store.evaluator_path(workdir, dataset_version, resolution)


def _as_tensor(value, n: int, default: torch.Tensor) -> torch.Tensor:
    if value is None:
        return default
    t = torch.as_tensor(value).reshape(-1).cpu()
    if t.shape[0] != n:
        raise UserError(f"data has {n} images but {t.shape[0]} augmented/source_index entries; rebuild the NPZ "
                        "dataset with imageToNPZ.py")
    return t


@dataclass
class _FruitData:
    """One fruit's images split for the classifier."""

    images: torch.Tensor        # (N,1,R,R) every image
    train_idx: torch.Tensor     # indices of training images (real and augmented, none derived from held-out)
    heldout_idx: torch.Tensor   # indices of held-out REAL drawings


def _split_fruit(images: torch.Tensor, augmented, source_index, fraction: float,
                 gen: torch.Generator) -> _FruitData:
    """Hold out a share of the REAL drawings, and every augmented image made from one of them."""
    n = images.shape[0]
    augmented = _as_tensor(augmented, n, torch.zeros(n, dtype=torch.bool)).bool()
    source = _as_tensor(source_index, n, torch.arange(n)).long()
    real_idx = torch.nonzero(~augmented).reshape(-1)
    n_real = int(real_idx.numel())
    n_held = min(max(1, round(fraction * n_real)), n_real - 1) if n_real >= 2 else 0
    held = real_idx[torch.randperm(n_real, generator=gen)[:n_held]]
    is_held_source = torch.zeros(n, dtype=torch.bool)
    is_held_source[held] = True
    in_training = ~is_held_source[source]        # an image whose source drawing is held out is not trained on
    return _FruitData(images, torch.nonzero(in_training).reshape(-1), held.sort().values)


def _data_hash(fruits: Sequence[str], real_by_fruit: Mapping, augmented_by_fruit, source_index_by_fruit,
               train_cfg: ClassifierTrainConfig) -> str:
    """sha256 of everything the classifier is trained from (images as 8-bit pixels, the split inputs, settings)."""
    h = hashlib.sha256()
    h.update(f"{CLASSIFIER_FORMAT}|{FEATURE_DIM}|{CLASSIFIER_WIDTH}|{WORK_RESOLUTION}|{POOL_GRID}|".encode())
    h.update(repr(sorted(asdict(train_cfg).items())).encode())
    for fruit in sorted(fruits):                  # the same data in another order is the same classifier
        images = real_by_fruit[fruit].detach().cpu()
        pixels = pictures.to_pixels(images)
        h.update(f"|{fruit}|{tuple(images.shape)}|".encode())
        h.update(pixels.numpy().tobytes())
        for extra in (augmented_by_fruit, source_index_by_fruit):
            value = None if extra is None else extra.get(fruit)
            h.update(b"-" if value is None else torch.as_tensor(value).cpu().to(torch.int64).numpy().tobytes())
    return h.hexdigest()


def _augment(x: torch.Tensor, cfg: ClassifierTrainConfig, gen: torch.Generator) -> torch.Tensor:
    """Random small rotation / zoom / shift / mirror of a batch (B,1,R,R) in [-1,1]; background stays -1."""
    b = x.shape[0]
    u = lambda: torch.rand(b, generator=gen) * 2 - 1                         # (B,) in [-1, 1]
    angle = u() * math.radians(cfg.max_rotation_deg)
    scale = 1.0 + u() * cfg.max_scale_change
    flip = torch.where(torch.rand(b, generator=gen) < 0.5, -1.0, 1.0) if cfg.flip else torch.ones(b)
    cos, sin = torch.cos(angle) / scale, torch.sin(angle) / scale
    theta = torch.stack([torch.stack([cos * flip, -sin, u() * cfg.max_shift], 1),
                         torch.stack([sin * flip, cos, u() * cfg.max_shift], 1)], 1).to(x)   # (B, 2, 3)
    grid = F.affine_grid(theta, list(x.shape), align_corners=False)
    # grid_sample pads with 0: sample x+1 (background 0) and shift back so the padding is black (-1)
    return F.grid_sample(x + 1.0, grid, mode="bilinear", padding_mode="zeros", align_corners=False) - 1.0


@contextmanager
def few_cpu_threads(device="cpu"):
    """Run the classifier's work with CLASSIFIER_CPU_THREADS threads on CPU; the caller's setting is restored."""
    before = torch.get_num_threads()
    if torch.device(device).type != "cpu" or before <= CLASSIFIER_CPU_THREADS:
        yield
        return
    torch.set_num_threads(CLASSIFIER_CPU_THREADS)
    try:
        yield
    finally:
        torch.set_num_threads(before)


def _with_few_threads(method):
    """Decorator for QualityEvaluator methods: few_cpu_threads on the evaluator's device."""
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with few_cpu_threads(self.device):
            return method(self, *args, **kwargs)
    return wrapper


def _isolated_rng(device: torch.device):
    """Seeding inside this context leaves the caller's (the GAN trainer's) random streams untouched."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


@torch.no_grad()
def predict(classifier: FruitClassifier, images: torch.Tensor, device="cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """(N,1,R,R) -> (predicted class index (N,), softmax probabilities (N,F)), both on CPU."""
    device = torch.device(device)
    classifier.eval()
    preds, probs = [], []
    with few_cpu_threads(device):
        for start in range(0, images.shape[0], EVAL_BATCH):
            logits = classifier(images[start:start + EVAL_BATCH].to(device, torch.float32))
            p = logits.softmax(dim=1).cpu()
            probs.append(p)
            preds.append(p.argmax(dim=1))
    if not probs:
        return torch.zeros(0, dtype=torch.long), torch.zeros(0, len(classifier.fruits))
    return torch.cat(preds), torch.cat(probs)


@torch.no_grad()
def _features(classifier: FruitClassifier, images: torch.Tensor, device: torch.device,
              scaled: bool = True) -> torch.Tensor:
    """(N,1,R,R) -> (N, FEATURE_DIM) on ``device``, in batches, eval mode."""
    classifier.eval()
    fn = classifier.features if scaled else classifier.raw_features
    out = [fn(images[s:s + EVAL_BATCH].to(device, torch.float32)) for s in range(0, images.shape[0], EVAL_BATCH)]
    return torch.cat(out) if out else torch.zeros(0, classifier.feature_dim, device=device)


def train_classifier(fruits: Sequence[str], data: Mapping[str, _FruitData], cfg: ClassifierTrainConfig,
                     device: torch.device, seed: int) -> FruitClassifier:
    """Train on the training split: fixed step budget, fruits equally likely in every batch."""
    # Shrunk once here (the network would do it on every pass anyway): augmenting 32 px is cheaper than 128 px.
    images = to_work_resolution(torch.cat([data[f].images[data[f].train_idx] for f in fruits]).float())  # (T,1,r,r)
    labels = torch.cat([torch.full((data[f].train_idx.numel(),), i, dtype=torch.long) for i, f in enumerate(fruits)])
    counts = torch.bincount(labels, minlength=len(fruits)).clamp(min=1).float()
    weights = 1.0 / counts[labels]                                                          # balance the fruits
    gen = torch.Generator().manual_seed(seed)
    with _isolated_rng(device):
        torch.manual_seed(seed)
        model = FruitClassifier(fruits).to(device)
        opt = torch.optim.AdamW(model.parameters(), lr=cfg.lr, weight_decay=cfg.weight_decay)
        sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=cfg.steps)
        loss_fn = nn.CrossEntropyLoss(label_smoothing=cfg.label_smoothing)
        model.train()
        for _ in range(cfg.steps):
            pick = torch.multinomial(weights, cfg.batch_size, replacement=True, generator=gen)   # (B,)
            x = _augment(images[pick], cfg, gen).to(device)                                      # (B,1,R,R)
            loss = loss_fn(model(x), labels[pick].to(device))
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    model.eval()
    # Fix the feature scale: root-mean-square spread of the real training features (all fruits together).
    feats = _features(model, images, device, scaled=False)
    spread = feats.var(dim=0, unbiased=False).mean().sqrt() if feats.shape[0] > 1 else torch.ones(())
    model.feature_scale.fill_(float(max(spread.item(), MIN_FEATURE_SCALE)))
    return model


def _heldout_accuracy(model: FruitClassifier, fruits: Sequence[str], data: Mapping[str, _FruitData],
                      device: torch.device) -> Tuple[Optional[float], Dict[str, Optional[float]], Dict[str, int]]:
    by_fruit: Dict[str, Optional[float]] = {}
    counts: Dict[str, int] = {}
    right = total = 0
    for i, f in enumerate(fruits):
        held = data[f].heldout_idx
        counts[f] = int(held.numel())
        if held.numel() == 0:
            by_fruit[f] = None
            continue
        pred, _ = predict(model, data[f].images[held], device)
        hits = int((pred == i).sum())
        by_fruit[f] = hits / held.numel()
        right += hits
        total += int(held.numel())
    return (right / total if total else None), by_fruit, counts


def _load_cached(path: Path, fruits: Sequence[str], resolution: int, data_hash: Optional[str],
                 device: torch.device) -> Optional[Tuple[FruitClassifier, dict]]:
    """The cached classifier if it matches (same fruits, resolution, data hash when given), else None."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:               # damaged or foreign file: retrain (it is only a cache)
        return None
    if not isinstance(payload, dict) or payload.get("format") != CLASSIFIER_FORMAT:
        return None
    stored = [str(f) for f in payload.get("fruits", [])]
    if sorted(stored) != sorted(fruits) or payload.get("resolution") != resolution:
        return None
    if data_hash is not None and payload.get("data_hash") != data_hash:
        return None
    if payload.get("feature_dim") != FEATURE_DIM or payload.get("width") != CLASSIFIER_WIDTH:
        return None
    with torch.random.fork_rng(devices=[]):        # building draws initial weights: keep the caller's stream
        model = FruitClassifier(stored)            # label order as trained
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError):
        return None
    model.heldout_accuracy_by_fruit = dict(payload.get("heldout_accuracy_by_fruit") or {})
    return model.to(device).eval(), payload


def load_cached_classifier(workdir: Path, dataset_version: str, resolution: int, fruits: Sequence[str],
                           device="cpu") -> Tuple[FruitClassifier, dict]:
    """The cached classifier without its training data (e.g. the NPZ files were deleted); UserError if none."""
    device = torch.device(device)
    path = classifier_path(workdir, dataset_version, resolution)
    found = _load_cached(path, fruits, resolution, None, device)
    if found is None:
        raise UserError(f"no quality classifier for dataset version {dataset_version!r} at {resolution}px with fruits "
                        f"{', '.join(fruits)} in {path.parent}, and its dataset is not there to train one; rebuild "
                        f"the dataset with rawDataToImage.py and imageToNPZ.py --version {dataset_version}")
    model, payload = found
    return model, _info(payload, path, trained=False)


# --------------------------------------------------------------------------------------------- all-fruit recogniser
def recognizer_path(workdir: Path, dataset_version: str, resolution: int) -> Path:
    """models/evaluators/recognizer_version<V>_<R>px.pt: the all-fruit classifier for one dataset version."""
    return model_store.evaluator_path(workdir, dataset_version, resolution, kind="recognizer")


def _pixel_key(pixels) -> bytes:
    """An image's identity: its (R,R) 8-bit pixels (a held-out PNG and the same drawing rendered again match)."""
    return bytes(pixels.astype("uint8", copy=False).tobytes())


def _excluded_pixel_keys(exclude_images: Optional[torch.Tensor]) -> set:
    """Identities of (K,R,R) uint8 pixels, or of (K,1,R,R) images in [-1,1]."""
    if exclude_images is None:
        return set()
    if exclude_images.dtype == torch.uint8 and exclude_images.dim() == 3:
        return {_pixel_key(img.numpy()) for img in exclude_images.cpu()}
    _check_images("exclude_images", exclude_images)
    return {_pixel_key(img.to(torch.uint8).numpy()) for img in pixel_levels(exclude_images)[:, 0]}


def _rendered_drawings(info, fruit: str, resolution: int):
    """Yield (key_id or None, (R,R) uint8) for each usable drawing of one rawData file, in file order."""
    from fruitgan.data import quickdraw_formats as qf
    from fruitgan.data import stroke_render as sr
    if info.format == qf.BITMAP:
        for row in qf.iter_bitmaps(info.path):
            if not qf.is_blank_bitmap(row):
                yield None, sr.image_array(sr.render_bitmap(row, resolution))
        return
    preset = qf.QUALITY_PRESETS[qf.DEFAULT_QUALITY]     # the drawings a default dataset would keep
    renderer = sr.StrokeRenderer(resolution)
    for drawing in qf.iter_drawings(info.path, fruit, info.format):
        if isinstance(drawing, qf.Drawing) and preset.reject_reason(drawing) is None:
            yield drawing.key_id, sr.image_array(renderer.render(drawing.strokes))


def render_rawdata_fruits(workdir: Path, resolution: int, exclude_key_ids: Sequence[str] = (),
                          exclude_images: Optional[torch.Tensor] = None,
                          max_per_fruit: int = RECOGNIZER_MAX_PER_FRUIT,
                          formats="auto") -> Tuple[Dict[str, torch.Tensor], Dict[str, dict]]:
    """Every fruit with drawings in <workdir>/rawData/, rendered in memory at ``resolution`` by the project's renderer.

    ``formats``: "auto" or a list of formats (quickdraw_formats.select_files, for every fruit), or {fruit:
    formats}: the formats a dataset used for its fruits, the other fruits' files chosen as image_conversion.choose_files
    would for a dataset of them at ``resolution`` (at 28 px: the source with the most drawings, e.g. bitmaps),
    so the recogniser sees drawings in the dataset's style (strokes rendered vs Google's bitmaps differ).
    Up to ``max_per_fruit`` drawings per fruit, in file order (quickdraw_formats.select_files: the user's files
    before the bundled sample, strokes before bitmaps under "auto"), de-duplicated by key_id. Drawings whose
    key_id is in ``exclude_key_ids``, or whose 8-bit pixels equal one of ``exclude_images`` ((K,1,R,R) in
    [-1,1], e.g. a dataset's held-out split; bitmaps have no key_id), are skipped.
    Returns ({fruit: (N,1,R,R) in [-1,1]}, {fruit: {"count", "excluded", "files"}}); fruits without any
    drawing are absent.
    """
    from fruitgan.data import quickdraw_formats as qf
    raw_dir = Path(workdir) / "rawData"
    if not raw_dir.is_dir():
        return {}, {}
    scan = qf.scan_raw_data(raw_dir)
    excluded_keys = {str(k) for k in exclude_key_ids}
    excluded_pixels = _excluded_pixel_keys(exclude_images)
    images: Dict[str, torch.Tensor] = {}
    details: Dict[str, dict] = {}
    from fruitgan.data.image_conversion import choose_files

    for fruit in scan.fruits_with_data(qf.AUTO):
        files_there = scan.files_for(fruit)
        if not isinstance(formats, Mapping):
            chosen = qf.select_files(files_there, formats)
        elif fruit in formats:                      # a dataset's fruit: the formats its dataset used
            chosen = qf.select_files(files_there, formats[fruit])
        else:                                       # any other: what a dataset of it would use at this size
            chosen = choose_files(files_there, qf.AUTO, resolution)[0]
        if not chosen:                 # none in the formats asked for: the fruit is absent
            continue
        kept, seen, skipped, files = [], set(), 0, []
        for info in chosen:
            if len(kept) >= max_per_fruit:
                break
            files.append(scan.relative(info.path))
            for key_id, pixels in _rendered_drawings(info, fruit, resolution):
                if key_id is not None:
                    if key_id in seen:                  # raw files repeat the simplified drawings
                        continue
                    seen.add(key_id)
                if key_id in excluded_keys or _pixel_key(pixels) in excluded_pixels:
                    skipped += 1
                    continue
                kept.append(torch.from_numpy(pixels.copy()))
                if len(kept) >= max_per_fruit:
                    break
        if kept:
            images[fruit] = from_pixel_levels(torch.stack(kept).unsqueeze(1))
        details[fruit] = {"count": len(kept), "excluded": skipped, "files": files}
    return images, details


def load_or_train_recognizer(workdir: Path, dataset_version: str, resolution: int,
                             exclude_key_ids: Sequence[str] = (), exclude_images: Optional[torch.Tensor] = None,
                             max_per_fruit: int = RECOGNIZER_MAX_PER_FRUIT, device="cpu", seed: int = 0,
                             train_config: Optional[ClassifierTrainConfig] = None,
                             log: Optional[Callable[[str], None]] = None,
                             formats="auto") -> Tuple[Optional[FruitClassifier], dict]:
    """The classifier that judges recognisability: every fruit of rawData/, never the dataset's held-out drawings.

    Rendered with render_rawdata_fruits (``exclude_key_ids`` / ``exclude_images``: the dataset version's
    held-out split, so the recogniser's verdict on those drawings is on drawings it never saw), trained like the
    dataset classifier and cached in recognizer_path (retrained when the drawings or exclusions change).
    Returns (classifier, info) as load_or_train_classifier, info also holding "rendered" (per-fruit counts);
    or (None, {"note": why, ...}) when fewer than MIN_RECOGNIZER_FRUITS fruits have MIN_RECOGNIZER_DRAWINGS
    drawings: a one-class classifier would call everything that fruit, so no recognisability is reported.
    ``formats`` (see render_rawdata_fruits): pass the dataset's formats per fruit, e.g. {"apple": ["bitmap"]}
    for a 28 px dataset built from bitmaps, so the recogniser judges drawings of the dataset's style.
    """
    images, details = render_rawdata_fruits(workdir, resolution, exclude_key_ids, exclude_images, max_per_fruit,
                                            formats)
    usable = {f: x for f, x in images.items() if x.shape[0] >= MIN_RECOGNIZER_DRAWINGS}
    if len(usable) < MIN_RECOGNIZER_FRUITS:
        found = ", ".join(f"{f} {d['count']}" for f, d in details.items()) or "none"
        return None, {"note": f"not enough fruits to judge recognisability: rawData/ has {MIN_RECOGNIZER_DRAWINGS}+ "
                              f"real drawings of {len(usable)} fruit(s) (found: {found}), need "
                              f"{MIN_RECOGNIZER_FRUITS}; put another fruit's Quick, Draw! file in rawData/",
                      "fruits": list(usable), "rendered": details}
    path = recognizer_path(workdir, dataset_version, resolution)
    model, info = _load_or_train_at(path, dataset_version, usable, None, None, device, seed, train_config, log)
    return model, {**info, "rendered": details}


def _info(payload: dict, path: Path, trained: bool) -> dict:
    return {"fruits": list(payload["fruits"]), "heldout_accuracy": payload.get("heldout_accuracy"),
            "heldout_accuracy_by_fruit": dict(payload.get("heldout_accuracy_by_fruit") or {}),
            "heldout_counts": dict(payload.get("heldout_counts") or {}),
            "train_counts": dict(payload.get("train_counts") or {}),
            "resolution": payload.get("resolution"), "created": payload.get("created"),
            "path": str(path), "trained": trained}


def load_or_train_classifier(workdir: Path, dataset_version: str, real_by_fruit: Mapping[str, torch.Tensor],
                             source_index_by_fruit: Optional[Mapping[str, torch.Tensor]] = None,
                             augmented_by_fruit: Optional[Mapping[str, torch.Tensor]] = None,
                             device="cpu", seed: int = 0, train_config: Optional[ClassifierTrainConfig] = None,
                             log: Optional[Callable[[str], None]] = None) -> Tuple[FruitClassifier, dict]:
    """The dataset version's quality classifier: loaded from its cache, or trained (seconds) and cached.

    ``real_by_fruit``: {fruit: (N,1,R,R) in [-1,1]}, every image of the version (augmented ones included when
    ``augmented_by_fruit``/``source_index_by_fruit`` say which they are: those made from a held-out drawing are
    never trained on). Returns (classifier in eval mode on ``device``, info) with info = {"fruits",
    "heldout_accuracy", "heldout_accuracy_by_fruit", "heldout_counts", "train_counts", "path", "trained", ...}.
    The classifier also carries ``heldout_accuracy_by_fruit`` (used by QualityEvaluator.reference).
    """
    return _load_or_train_at(classifier_path(workdir, dataset_version, _resolution_of(real_by_fruit)),
                             dataset_version, real_by_fruit, source_index_by_fruit, augmented_by_fruit,
                             device, seed, train_config, log)


def _resolution_of(real_by_fruit: Mapping[str, torch.Tensor]) -> int:
    return int(next(iter(real_by_fruit.values())).shape[-1]) if real_by_fruit else 0


def _load_or_train_at(path: Path, dataset_version: str, real_by_fruit: Mapping[str, torch.Tensor],
                      source_index_by_fruit, augmented_by_fruit, device, seed: int,
                      train_config: Optional[ClassifierTrainConfig], log) -> Tuple[FruitClassifier, dict]:
    """load_or_train_classifier with the cache file given (the dataset's classifier or the all-fruit recogniser)."""
    cfg = train_config or ClassifierTrainConfig()
    device = torch.device(device)
    fruits = list(real_by_fruit)
    if not fruits:
        raise UserError("no fruit images given to train the quality classifier; build a dataset with imageToNPZ.py")
    sizes = {f: tuple(real_by_fruit[f].shape[1:]) for f in fruits}
    resolution = int(real_by_fruit[fruits[0]].shape[-1])
    if len(set(sizes.values())) > 1 or any(len(s) != 3 or s[0] != 1 for s in sizes.values()):
        raise UserError(f"quality classifier needs (N,1,R,R) images of one size; got "
                        f"{', '.join(f'{f} {s}' for f, s in sizes.items())}")
    data_hash = _data_hash(fruits, real_by_fruit, augmented_by_fruit, source_index_by_fruit, cfg)
    cached = _load_cached(path, fruits, resolution, data_hash, device)
    if cached is not None:
        model, payload = cached
        return model, _info(payload, path, trained=False)

    gen = torch.Generator().manual_seed(seed)
    data = {f: _split_fruit(real_by_fruit[f].detach().cpu(),
                            None if augmented_by_fruit is None else augmented_by_fruit.get(f),
                            None if source_index_by_fruit is None else source_index_by_fruit.get(f),
                            cfg.heldout_fraction, gen) for f in fruits}
    empty = [f for f in fruits if data[f].train_idx.numel() == 0]
    if empty:
        raise UserError(f"no training images for the quality classifier for {', '.join(empty)}; "
                        "that fruit's dataset is empty: rebuild it with rawDataToImage.py")
    if log:
        total = sum(int(d.train_idx.numel()) for d in data.values())
        log(f"training the quality classifier on {total} images of {len(fruits)} fruits ({cfg.steps} steps)")
    with few_cpu_threads(device):
        model = train_classifier(fruits, data, cfg, device, seed)
        overall, by_fruit, held_counts = _heldout_accuracy(model, fruits, data, device)
    model.heldout_accuracy_by_fruit = by_fruit
    payload = {
        "format": CLASSIFIER_FORMAT, "fruits": fruits, "resolution": resolution, "data_hash": data_hash,
        "feature_dim": FEATURE_DIM, "width": CLASSIFIER_WIDTH, "dataset_version": dataset_version,
        "state_dict": {k: v.detach().cpu().clone() for k, v in model.state_dict().items()},
        "heldout_accuracy": overall, "heldout_accuracy_by_fruit": by_fruit, "heldout_counts": held_counts,
        "train_counts": {f: int(data[f].train_idx.numel()) for f in fruits}, "seed": int(seed),
        "train_config": asdict(cfg), "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
    atomic_torch_save(payload, path)
    return model, _info(payload, path, trained=True)


# --------------------------------------------------------------------------------------------- metrics
def _kth_distance(dist: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row's point to its k-th nearest neighbour in its own set (dist (N,N), self at 0)."""
    return dist.kthvalue(k + 1, dim=1).values                                  # (N,): +1 skips the point itself


def manifold_metrics(real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K) -> dict:
    """Precision/recall (Kynkäänniemi et al.) and density/coverage (Naeem et al.) of ``fake`` (N,D) vs ``real`` (M,D).

    Each point's neighbourhood is the ball reaching its k-th nearest neighbour in its own set.
      precision: share of fakes inside some real ball;     recall: share of reals inside some fake ball;
      density:   mean number of real balls holding a fake, / k (about 1 when fakes look like reals);
      coverage:  share of real balls holding at least one fake (robust to outliers, exposes mode collapse).
    k shrinks to (set size - 1) for tiny sets; NaN when a set has fewer than 2 points.
    """
    m, n = real.shape[0], fake.shape[0]
    if m < 2 or n < 2:
        return {"precision": math.nan, "recall": math.nan, "density": math.nan, "coverage": math.nan, "k": 0}
    real, fake = real.double(), fake.double()
    mode = "donot_use_mm_for_euclid_dist"        # exact distances: a duplicate is at distance 0, not 1e-7
    k_real, k_fake = min(k, m - 1), min(k, n - 1)
    real_radius = _kth_distance(torch.cdist(real, real, compute_mode=mode), k_real)   # (M,)
    fake_radius = _kth_distance(torch.cdist(fake, fake, compute_mode=mode), k_fake)   # (N,)
    d_rf = torch.cdist(real, fake, compute_mode=mode)                                 # (M, N)
    inside_real = d_rf < real_radius[:, None]                                         # fake j in real ball i
    inside_fake = d_rf < fake_radius[None, :]                                         # real i in fake ball j
    return {
        "precision": inside_real.any(dim=0).double().mean().item(),
        "recall": inside_fake.any(dim=1).double().mean().item(),
        "density": (inside_real.double().sum(dim=0) / k_real).mean().item(),
        "coverage": (d_rf.min(dim=1).values < real_radius).double().mean().item(),
        "k": k_real,
    }


class QualityEvaluator:
    """Quality figures of generated images against the real drawings, per fruit (real features cached).

    ``classifier``: a FruitClassifier (its ``fruits`` give the label order); ``fruits``: the fruits to evaluate
    (each must be one of the classifier's); ``real_by_fruit``: {fruit: (M,1,R,R) REAL drawings in [-1,1]}.
    """

    def __init__(self, classifier: FruitClassifier, fruits: Sequence[str], real_by_fruit: Mapping[str, torch.Tensor],
                 device="cpu"):
        self.device = torch.device(device)
        self.classifier = classifier.to(self.device).eval()
        label_order = list(getattr(classifier, "fruits", fruits))
        unknown = [f for f in fruits if f not in label_order or f not in real_by_fruit]
        if unknown:
            raise UserError(f"the quality classifier knows {', '.join(label_order)} (real images given for "
                            f"{', '.join(real_by_fruit)}), not {', '.join(unknown)}")
        self.fruits = list(fruits)
        self.label = {f: label_order.index(f) for f in self.fruits}
        # A one-class classifier recognises everything: its verdicts are refused, the other figures stay.
        self.recognizes = len(label_order) >= MIN_RECOGNIZER_FRUITS
        self.recognizability_note = None if self.recognizes else ONE_CLASS_NOTE.format(fruits=", ".join(label_order))
        self.real = {f: real_by_fruit[f].detach() for f in self.fruits}
        self._extractor = PrecomputedFeatures(classifier.feature_dim)
        self._real_features: Dict[str, torch.Tensor] = {}
        self._fid: Dict[str, object] = {}
        self._reference: Dict[str, dict] = {}

    def _check(self, fruit: str, images: torch.Tensor) -> None:
        if fruit not in self.label:
            raise UserError(f"no quality figures for {fruit!r}: this evaluator measures {', '.join(self.fruits)}")
        want = tuple(self.real[fruit].shape[1:])
        if images.dim() != 4 or tuple(images.shape[1:]) != want:
            raise UserError(f"generated {fruit} images are {tuple(images.shape)}, expected (N, {', '.join(map(str, want))})")

    def real_features(self, fruit: str) -> torch.Tensor:
        """(M, FEATURE_DIM) features of the fruit's real drawings (computed once)."""
        if fruit not in self._real_features:
            self._real_features[fruit] = _features(self.classifier, self.real[fruit], self.device)
        return self._real_features[fruit]

    def _new_fid(self):
        from torchmetrics.image.fid import FrechetInceptionDistance

        return FrechetInceptionDistance(feature=self._extractor, reset_real_features=False).to(self.device)

    def _fid_metric(self, fruit: str):
        """torchmetrics FID with the real drawings' statistics loaded once (kept across resets)."""
        if fruit not in self._fid:
            metric = self._new_fid()
            metric.update(self.real_features(fruit), real=True)
            self._fid[fruit] = metric
        return self._fid[fruit]

    @torch.no_grad()
    def _fid_vs_real(self, fruit: str, feats: torch.Tensor) -> float:
        """FID between the fruit's real drawings and images with features ``feats`` (N, FEATURE_DIM)."""
        if self.real[fruit].shape[0] < 2 or feats.shape[0] < 2:
            return math.nan
        metric = self._fid_metric(fruit)
        metric.reset()                                     # drops the previous fakes, keeps the real statistics
        metric.update(feats, real=False)
        return max(float(metric.compute()), 0.0)           # tiny negative values are round-off

    @torch.no_grad()
    def _fid_two_sets(self, a: torch.Tensor, b: torch.Tensor) -> float:
        """FID between two feature sets (M, FEATURE_DIM) and (N, FEATURE_DIM)."""
        if a.shape[0] < 2 or b.shape[0] < 2:
            return math.nan
        metric = self._new_fid()
        metric.update(a, real=True)
        metric.update(b, real=False)
        return max(float(metric.compute()), 0.0)

    @_with_few_threads
    @torch.no_grad()
    def evaluate(self, fruit: str, generated: torch.Tensor) -> dict:
        """Figures for ``generated`` (N,1,R,R) in [-1,1] meant to be ``fruit`` (plain floats, JSON-ready)."""
        self._check(fruit, generated)
        feats = _features(self.classifier, generated, self.device)                  # (N, FD)
        probs = self.classifier.logits_from_features(feats).softmax(dim=1)          # (N, F)
        target = self.label[fruit]
        if self.recognizes:
            out = {
                "recognizability": (probs.argmax(dim=1) == target).double().mean().item() if len(feats) else math.nan,
                "confidence": probs[:, target].double().mean().item() if len(feats) else math.nan,
            }
        else:      # no number at all (not even None): callers read a missing figure as "not measured"
            out = {"recognizability_note": self.recognizability_note}
        out["fid"] = self._fid_vs_real(fruit, feats)
        out.update(manifold_metrics(self.real_features(fruit), feats))
        out["num_generated"] = int(generated.shape[0])
        out["num_real"] = int(self.real[fruit].shape[0])
        return out

    @_with_few_threads
    @torch.no_grad()
    def reference(self, fruit: str) -> dict:
        """What real drawings score against each other: the yardstick for ``evaluate``'s figures.

        fid_real_halves, precision, recall, density, coverage: one random half of the real drawings measured
        against the other half (small halves make FID larger than for 256 fakes of equal quality, so read it
        as an order of magnitude); heldout_recognizability: the classifier's accuracy on real drawings it never
        trained on (None when none were held out); recognizability_all_real: on every real drawing (mostly
        training data: optimistic); fid_uniform_noise: FID of as many uniform-noise images as real drawings.
        """
        if fruit in self._reference:
            return dict(self._reference[fruit])
        if fruit not in self.label:
            raise UserError(f"no reference for {fruit!r}: this evaluator measures {', '.join(self.fruits)}")
        real = self.real[fruit]
        m = real.shape[0]
        order = torch.randperm(m, generator=torch.Generator().manual_seed(REFERENCE_SEED))
        feats = self.real_features(fruit)                                           # (M, FD)
        half_a, half_b = feats[order[: m // 2]], feats[order[m // 2:]]
        ref = {"num_real": int(m), "half_size": int(m // 2), "fid_real_halves": self._fid_two_sets(half_a, half_b)}
        ref.update(manifold_metrics(half_a, half_b))
        if self.recognizes:
            pred = self.classifier.logits_from_features(feats).argmax(dim=1)
            ref["recognizability_all_real"] = (pred == self.label[fruit]).double().mean().item() if m else math.nan
            held = getattr(self.classifier, "heldout_accuracy_by_fruit", {}) or {}
            ref["heldout_recognizability"] = held.get(fruit)
        else:
            ref.update(recognizability_all_real=None, heldout_recognizability=None,
                       recognizability_note=self.recognizability_note)
        noise = torch.rand(max(m, 2), *real.shape[1:], generator=torch.Generator().manual_seed(NOISE_SEED)) * 2 - 1
        ref["fid_uniform_noise"] = self._fid_vs_real(fruit, _features(self.classifier, noise, self.device))
        self._reference[fruit] = ref
        return dict(ref)


# --------------------------------------------------------------------------------------------- held-out tests
# Classifier two-sample test (C2ST, Lopez-Paz & Oquab 2017): can a small CNN tell generated images from REAL
# drawings it never saw? k-fold: the real drawings (and as many fakes) are cut into k folds; a CNN trained on
# k-1 folds of each set labels the remaining fold; every drawing is labelled once, so the accuracy is a
# binomial count over all of them, with a Wilson 95% interval. Calibrated on the committed 28 px apple
# generator (400 epochs, 200 held-out bitmaps): 300 steps per fold said 0.67, 1000 steps 0.87 (width 16)
# and 0.90 (width 32), against 0.55 for the old one-split test on 100 drawings and 0.85 for an independent
# CNN trained on 1000+ drawings per side. The test learns for TWO_SAMPLE_EPOCHS passes over its fold.
TWO_SAMPLE_FOLDS = 4              # every drawing labelled once by a CNN that trained on the other 3/4
TWO_SAMPLE_EPOCHS = 200           # passes over a fold's training images (fewer steps saw far less)
TWO_SAMPLE_MIN_STEPS = 100
TWO_SAMPLE_MAX_STEPS = 1500       # per fold: bounds the time on large held-out parts
TWO_SAMPLE_BATCH = 64             # images per step, half real, half generated
TWO_SAMPLE_LR = 2e-3              # one-cycle peak learning rate
TWO_SAMPLE_WEIGHT_DECAY = 1e-2
TWO_SAMPLE_WIDTH = 16             # first convolution's channels of the two-sample CNN
TWO_SAMPLE_SHIFT = 2              # training images are shifted by up to 2 px (and mirrored): both sets alike
TWO_SAMPLE_MAX_REAL = 4000        # real drawings used at most (a seeded choice): time stays bounded
TWO_SAMPLE_SEED = 0
CONFIDENCE_Z = 1.959964           # 95% two-sided
# A figure is called only when its interval is this narrow: 0.5 and 0.7 are then told apart.
TWO_SAMPLE_MAX_HALF_WIDTH = 0.1
# Fewest real drawings for a figure at all (the interval is then about +-0.15, said as "too wide to call").
MIN_TWO_SAMPLE_REAL = 20
PIXEL_LEVELS = 255                # real drawings are 8-bit PNGs: 256 levels, 0..255
# Memorisation ratio: the median of each set's nearest-training-image distances. The median of 40 values has a
# standard error of about 0.2 of the distances' spread; fewer held-out drawings make the ratio's denominator
# unreliable.
MIN_MEMORISATION_HELDOUT = 40
MEMORISATION_MAX_GENERATED = 1000  # generated images compared with the training set at most
NEAREST_CHUNK = 256               # query images per distance block (block = 256 x NEAREST_TRAIN_CHUNK floats)
NEAREST_TRAIN_CHUNK = 4096        # training images per distance block: memory stays a few MB at any data size


def quantise_pixels(images: torch.Tensor) -> torch.Tensor:
    """(N,1,R,R) in [-1,1] -> the same on the 256 levels of an 8-bit PNG (as real drawings are stored).

    Generated images are floats; without this a two-sample test could tell them apart by their in-between
    values alone instead of by the drawing.
    """
    return from_pixel_levels(pixel_levels(images))


def pixel_levels(images: torch.Tensor) -> torch.Tensor:
    """[-1,1] floats -> 0..255 whole numbers (as float), on CPU."""
    return ((images.detach().float().cpu() + 1.0) * (PIXEL_LEVELS / 2.0)).round().clamp(0, PIXEL_LEVELS)


def from_pixel_levels(pixels: torch.Tensor) -> torch.Tensor:
    """0..255 pixel values (any number type) -> floats in [-1,1], as the networks see them."""
    return pixels.float() / (PIXEL_LEVELS / 2.0) - 1.0


def _not_enough_real(n_real: int, needed: int) -> str:
    return f"not enough real drawings ({n_real} held out, need {needed})"


def _check_images(name: str, images: torch.Tensor) -> None:
    if not isinstance(images, torch.Tensor) or images.dim() != 4 or images.shape[1] != 1:
        shape = tuple(images.shape) if isinstance(images, torch.Tensor) else type(images).__name__
        raise UserError(f"{name} must be a (N, 1, R, R) image tensor, got {shape}")


def _check_same_size(**sets: torch.Tensor) -> None:
    for name, images in sets.items():
        _check_images(name, images)
    sizes = {name: tuple(images.shape[-2:]) for name, images in sets.items()}
    if len(set(sizes.values())) > 1:
        raise UserError("images to compare must have one size; got "
                        + ", ".join(f"{name} {s[0]}x{s[1]}" for name, s in sizes.items()))


def wilson_interval(correct: int, total: int, z: float = CONFIDENCE_Z) -> Tuple[float, float]:
    """Wilson score interval of a binomial proportion correct/total (95% by default); (0, 1) when total is 0."""
    if total <= 0:
        return 0.0, 1.0
    p = correct / total
    centre = (p + z * z / (2 * total)) / (1 + z * z / total)
    half = z * math.sqrt(p * (1 - p) / total + z * z / (4 * total * total)) / (1 + z * z / total)
    return max(0.0, centre - half), min(1.0, centre + half)


def two_sample_fakes_needed(n_real: int) -> int:
    """Generated images two_sample_test uses for ``n_real`` real drawings: as many (at most TWO_SAMPLE_MAX_REAL)."""
    return min(int(n_real), TWO_SAMPLE_MAX_REAL)


class TwoSampleNet(nn.Module):
    """Small CNN for the two-sample test: (B,1,r,r) -> one logit "generated" (B,). Any r from 8 to 32."""

    def __init__(self, width: int = TWO_SAMPLE_WIDTH):
        super().__init__()
        c = width
        self.net = nn.Sequential(
            nn.Conv2d(1, c, 3, padding=1), nn.LeakyReLU(0.2),                         # (B, c, r, r)
            nn.Conv2d(c, c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),               # (B, c, r/2, r/2)
            nn.Conv2d(c, 2 * c, 3, padding=1), nn.LeakyReLU(0.2),                     # (B, 2c, r/2, r/2)
            nn.Conv2d(2 * c, 2 * c, 3, stride=2, padding=1), nn.LeakyReLU(0.2),       # (B, 2c, r/4, r/4)
            nn.Conv2d(2 * c, 4 * c, 3, padding=1), nn.LeakyReLU(0.2),                 # (B, 4c, r/4, r/4)
            nn.AdaptiveAvgPool2d(1), nn.Flatten(),                                    # (B, 4c)
            nn.Dropout(HEAD_DROPOUT), nn.Linear(4 * c, 1),                            # (B, 1)
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).squeeze(1)


def _shift_and_mirror(x: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """Random whole-pixel shifts (up to TWO_SAMPLE_SHIFT, black shifted in) and mirroring of a batch (B,1,r,r):
    applied to both sets alike, so it gives the CNN variety without telling it which set is which."""
    b, _, r, _ = x.shape
    m = TWO_SAMPLE_SHIFT
    flip = torch.rand(b, generator=gen) < 0.5
    x = torch.where(flip[:, None, None, None], x.flip(-1), x)
    padded = F.pad(x, (m, m, m, m), value=-1.0)
    dy, dx = (torch.randint(0, 2 * m + 1, (b,), generator=gen) for _ in range(2))
    idx = torch.arange(r)
    rows = (dy[:, None] + idx).view(b, 1, r, 1).expand(b, 1, r, r + 2 * m)
    cols = (dx[:, None] + idx).view(b, 1, 1, r).expand(b, 1, r, r)
    return padded.gather(2, rows).gather(3, cols)


def _fold_steps(train_items: int) -> int:
    steps = round(TWO_SAMPLE_EPOCHS * train_items / TWO_SAMPLE_BATCH)
    return int(min(max(steps, TWO_SAMPLE_MIN_STEPS), TWO_SAMPLE_MAX_STEPS))


def _autocast():
    """bf16 where this CPU multiplies it in hardware (2.2x faster steps for this small CNN, measured), else fp32:
    the test's verdicts need no more precision, its run time matters at every milestone."""
    from fruitgan.learn.grouped import cpu_has_bf16

    return torch.autocast("cpu", dtype=torch.bfloat16) if cpu_has_bf16() else contextlib.nullcontext()


def two_sample_steps(n_real: int, folds: int = TWO_SAMPLE_FOLDS) -> int:
    """Training steps two_sample_test takes for ``n_real`` real drawings (and as many fakes), every fold."""
    n = min(int(n_real), TWO_SAMPLE_MAX_REAL)
    per_fold = 2 * (n - n // folds)                       # both sets' images outside one fold (about)
    return folds * _fold_steps(per_fold) if n >= MIN_TWO_SAMPLE_REAL else 0


def _train_two_sample_net(real: torch.Tensor, fake: torch.Tensor, seed: int) -> TwoSampleNet:
    """A CNN telling ``fake`` (label 1) from ``real`` (label 0), trained on balanced batches."""
    gen = torch.Generator().manual_seed(seed)
    steps = _fold_steps(real.shape[0] + fake.shape[0])
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        model = TwoSampleNet()
        opt = torch.optim.AdamW(model.parameters(), lr=TWO_SAMPLE_LR, weight_decay=TWO_SAMPLE_WEIGHT_DECAY)
        sched = torch.optim.lr_scheduler.OneCycleLR(opt, TWO_SAMPLE_LR, total_steps=steps)
        half = TWO_SAMPLE_BATCH // 2
        target = torch.cat([torch.zeros(half), torch.ones(half)])
        model.train()
        for _ in range(steps):
            x = torch.cat([real[torch.randint(0, real.shape[0], (half,), generator=gen)],
                           fake[torch.randint(0, fake.shape[0], (half,), generator=gen)]])
            with _autocast():          # the forward pass only: a net built under autocast learnt nonsense
                logits = model(_shift_and_mirror(x, gen))
            loss = F.binary_cross_entropy_with_logits(logits.float(), target)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            sched.step()
    return model.eval()


@torch.no_grad()
def _says_generated(model: TwoSampleNet, images: torch.Tensor) -> torch.Tensor:
    """(N,) bool: the CNN's verdict "generated" on each image."""
    with _autocast():
        return torch.cat([model(images[s:s + EVAL_BATCH]).float() > 0 for s in range(0, images.shape[0], EVAL_BATCH)])


def two_sample_test(real_heldout: torch.Tensor, fake: torch.Tensor, folds: int = TWO_SAMPLE_FOLDS,
                    seed: int = TWO_SAMPLE_SEED) -> dict:
    """How often a small CNN tells ``fake`` from ``real_heldout``, each image labelled by a CNN that never saw it.

    real_heldout: (N,1,R,R) in [-1,1], REAL drawings the generator never trained on; fake: (M,1,R,R) generated.
    Both are put on the 256 levels of 8-bit pixels and shrunk to the work resolution; n = min(N, M,
    TWO_SAMPLE_MAX_REAL) of each take part (a seeded choice), cut into ``folds`` folds; fold j is labelled by a
    CNN trained on the other folds of both sets.

    Returns {"two_sample_accuracy": share labelled right (0.5 = indistinguishable, 1.0 = trivially told
    apart), "two_sample_low"/"two_sample_high": its Wilson 95% interval, "two_sample_half_width",
    "two_sample_n": images labelled (2n), "two_sample_real": n, "two_sample_decided": the interval is at most
    +-TWO_SAMPLE_MAX_HALF_WIDTH wide, else "two_sample_note" says it is too wide to call}. With fewer than
    MIN_TWO_SAMPLE_REAL real (or generated) images the figures are None and the note says why.
    """
    _check_same_size(real_heldout=real_heldout, fake=fake)
    if folds < 2:
        raise UserError("two_sample_test needs at least two folds")
    n_real, n_fake = int(real_heldout.shape[0]), int(fake.shape[0])
    n = min(n_real, n_fake, TWO_SAMPLE_MAX_REAL)
    out = {"two_sample_accuracy": None, "two_sample_low": None, "two_sample_high": None,
           "two_sample_half_width": None, "two_sample_n": 0, "two_sample_real": 0, "two_sample_decided": False}
    if n_real < MIN_TWO_SAMPLE_REAL:
        return {**out, "two_sample_note": _not_enough_real(n_real, MIN_TWO_SAMPLE_REAL)}
    if n < MIN_TWO_SAMPLE_REAL:
        return {**out, "two_sample_note": f"not enough generated images ({n_fake}, need {MIN_TWO_SAMPLE_REAL})"}
    gen = torch.Generator().manual_seed(seed)
    # All the caller's threads (not few_cpu_threads): this CNN is big enough to use two (1.4x), and runs alone.
    real = to_work_resolution(quantise_pixels(real_heldout[torch.randperm(n_real, generator=gen)[:n]]))
    fake = to_work_resolution(quantise_pixels(fake[torch.randperm(n_fake, generator=gen)[:n]]))
    fold_of = torch.arange(n) % folds
    right = 0
    for j in range(folds):
        test, train = fold_of == j, fold_of != j
        model = _train_two_sample_net(real[train], fake[train], seed * folds + j + 1)
        right += int((~_says_generated(model, real[test])).sum()) + int(_says_generated(model, fake[test]).sum())
    total = 2 * n
    low, high = wilson_interval(right, total)
    half = (high - low) / 2
    out.update(two_sample_accuracy=right / total, two_sample_low=low, two_sample_high=high,
               two_sample_half_width=half, two_sample_n=total, two_sample_real=n,
               two_sample_decided=half <= TWO_SAMPLE_MAX_HALF_WIDTH)
    if not out["two_sample_decided"]:
        out["two_sample_note"] = (f"too few held-out drawings to call ({n} real: the 95% interval "
                                  f"{low:.2f}-{high:.2f} is wider than +-{TWO_SAMPLE_MAX_HALF_WIDTH})")
    return out


def _nearest_distances(queries: torch.Tensor, reference_blocks) -> torch.Tensor:
    """(Q, D) queries, an iterable of (T_i, D) reference blocks -> (Q,) distance to the nearest reference row.

    The reference is walked once, block by block (each block against every query), so it is never held whole.
    """
    nearest = torch.full((queries.shape[0],), math.inf, dtype=torch.float64)
    for block in reference_blocks:
        for qs in range(0, queries.shape[0], NEAREST_CHUNK):
            # Exact differences, not the matrix-product shortcut: an exact copy must come out at 0.
            d = torch.cdist(queries[qs:qs + NEAREST_CHUNK], block, compute_mode="donot_use_mm_for_euclid_dist")
            nearest[qs:qs + NEAREST_CHUNK] = torch.minimum(nearest[qs:qs + NEAREST_CHUNK], d.min(dim=1).values.double())
    return nearest


def _pixel_vectors(images: torch.Tensor) -> torch.Tensor:
    """(N,1,R,R) in [-1,1], or (N,R,R) uint8 pixels -> (N, r*r) quantised pixels at the work resolution."""
    if images.dtype == torch.uint8:
        images = images.float().div_(PIXEL_LEVELS / 2.0).sub_(1.0).unsqueeze(1)
    return to_work_resolution(quantise_pixels(images)).reshape(images.shape[0], -1)


def _vector_blocks(images: torch.Tensor):
    """_pixel_vectors of ``images``, NEAREST_TRAIN_CHUNK at a time."""
    for start in range(0, images.shape[0], NEAREST_TRAIN_CHUNK):
        yield _pixel_vectors(images[start:start + NEAREST_TRAIN_CHUNK])


def memorisation_ratio(generated: torch.Tensor, train: torch.Tensor, heldout_real: torch.Tensor) -> dict:
    """Does the generator copy its training drawings? (generated and heldout_real (N,1,R,R) in [-1,1]; train
    the same, or its stored (N,R,R) uint8 pixels, which are converted block by block; one size)

        ratio = median over generated of the distance to the nearest TRAINING image
                / median over held-out real drawings of the distance to the nearest TRAINING image

    About 1: generated images sit as far from the training set as new real drawings do (healthy); well
    below 1: they sit on top of training images (copying). Distances are in pixel space (quantised to 8 bits,
    shrunk to the work resolution): copying is a pixel-level fact, the measure needs no trained network (whose
    features, trained on the same few drawings, could call different drawings alike), and the shrinking to
    32 px forgives a copy moved by a fraction of a pixel. Computed in blocks, so memory stays bounded.

    Returns {"memorisation_ratio", "memorisation_generated_median", "memorisation_heldout_median",
    "memorisation_n_heldout"}; the ratio is None with a "memorisation_note" when fewer than
    MIN_MEMORISATION_HELDOUT held-out real drawings are given (or the training set is empty).
    """
    train_view = train.unsqueeze(1) if train.dtype == torch.uint8 and train.dim() == 3 else train
    _check_same_size(generated=generated, train=train_view, heldout_real=heldout_real)
    n_held = int(heldout_real.shape[0])
    out = {"memorisation_ratio": None, "memorisation_generated_median": None,
           "memorisation_heldout_median": None, "memorisation_n_heldout": n_held}
    if n_held < MIN_MEMORISATION_HELDOUT:
        return {**out, "memorisation_note": _not_enough_real(n_held, MIN_MEMORISATION_HELDOUT)}
    if train.shape[0] == 0 or generated.shape[0] == 0:
        return {**out, "memorisation_note": "no training or no generated images to compare"}
    with few_cpu_threads("cpu"):
        queries = torch.cat([_pixel_vectors(generated), _pixel_vectors(heldout_real)])
        nearest = _nearest_distances(queries, _vector_blocks(train.cpu()))
        gen_median = nearest[:generated.shape[0]].median().item()
        held_median = nearest[generated.shape[0]:].median().item()
    out.update(memorisation_generated_median=gen_median, memorisation_heldout_median=held_median)
    if held_median <= 0:
        return {**out, "memorisation_note": "held-out drawings are copies of training drawings: split leaks"}
    out["memorisation_ratio"] = gen_median / held_median
    return out


def _number(metrics: Mapping, key: str) -> Optional[float]:
    """metrics[key] as a float; None when absent or None (not measured); NaN stays NaN."""
    value = metrics.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def quality_score(metrics: Mapping) -> float:
    """One number per evaluation, higher is better: how the trainer picks each fruit's "best" checkpoint.

    With the two-sample test measured (the headline figure, on held-out real drawings):

        score = (1 - two_sample_accuracy) - 1.0 * max(0, 0.95 - memorisation_ratio)

    a lower accuracy (fakes harder to tell from real drawings) is better; a generator that copies its training
    drawings also fools the test, so a memorisation ratio below 0.95 costs (when measured). Otherwise, as before:

        score = recognizability + coverage - 0.25 * ln(1 + fid)

    recognizability (0..1) rewards fakes the classifier takes for the intended fruit (left out when it was
    refused: a one-class classifier); coverage (0..1) rewards reaching the variety of the real drawings (it falls
    under mode collapse, which recognizability cannot see); the Fréchet distance (in real-feature-variance units)
    is penalised on a log scale so it refines the ranking without swamping the other two. A missing or NaN
    figure gives -inf (never "best"). The two formulas are not on one scale: within one training run the
    held-out split, and so which one applies, stays the same.
    """
    accuracy = _number(metrics, "two_sample_accuracy")
    if accuracy is not None:
        if math.isnan(accuracy):
            return -math.inf
        ratio = _number(metrics, "memorisation_ratio")
        copying = 0.0 if ratio is None or math.isnan(ratio) else max(0.0, HEALTHY_MEMORISATION - ratio)
        return (1.0 - accuracy) - SCORE_MEMORISATION_WEIGHT * copying
    cover, fid = _number(metrics, "coverage"), _number(metrics, "fid")
    recog = _number(metrics, "recognizability")
    if recog is None and "recognizability_note" not in metrics:
        return -math.inf
    figures = [v for v in (recog, cover, fid) if v is not None]
    if cover is None or fid is None or any(math.isnan(v) for v in figures) or fid < 0:
        return -math.inf
    return (recog or 0.0) + cover - SCORE_FID_WEIGHT * math.log1p(fid)


# Columns of format_metrics_table: (key, header, format)
TABLE_COLUMNS = (
    ("two_sample_accuracy", "2-sample", "{:.2f}"),
    ("two_sample_half_width", "+-", "{:.2f}"),
    ("memorisation_ratio", "memo.", "{:.2f}"),
    ("recognizability", "recognised", "{:.0%}"),
    ("confidence", "conf.", "{:.2f}"),
    ("fid", "FID", "{:.2f}"),
    ("precision", "prec.", "{:.2f}"),
    ("recall", "recall", "{:.2f}"),
    ("density", "density", "{:.2f}"),
    ("coverage", "cover.", "{:.2f}"),
    ("score", "score", "{:.3f}"),
)


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt.format(value)
    return str(value)


def format_metrics_table(rows: Sequence[Mapping]) -> str:
    """A plain-text table of metric dicts, one per row.

    Leading label columns are the keys that are not metrics (e.g. "fruit", "model", "epoch", "checkpoint"),
    in first-seen order; metric columns are those of TABLE_COLUMNS present in any row; missing values show "-".
    """
    known = {k for k, _, _ in TABLE_COLUMNS}
    # Details of the figures (counts, medians, notes) are not row labels.
    skip = {"num_generated", "num_real", "k", "half_size", "two_sample_n", "two_sample_real", "two_sample_low",
            "two_sample_high", "two_sample_decided", "memorisation_generated_median", "memorisation_heldout_median",
            "memorisation_n_heldout"}
    labels: list = []
    for row in rows:
        for key, value in row.items():
            if (key not in known and key not in skip and not key.endswith("_note") and key not in labels
                    and not isinstance(value, (dict, list))):
                labels.append(key)
    metrics = [(k, h, f) for k, h, f in TABLE_COLUMNS if any(k in row for row in rows)]
    header = labels + [h for _, h, _ in metrics]
    body = [[_cell(row.get(k), "{}" if not isinstance(row.get(k), float) else "{:.3g}") for k in labels]
            + [_cell(row.get(k), f) for k, _, f in metrics] for row in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)] if header else []
    lines = ["  ".join(str(c).ljust(w) if i < len(labels) else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(line, widths))).rstrip() for line in [header, *body]]
    return "\n".join(lines)

"""How real do the fakes look? Quality figures for generated fruit drawings, measured by a small classifier.

A GAN's losses say little about its images, so at milestone epochs the trainer asks this module:

* **recognizability**: the share of generated images that a classifier trained on the REAL drawings of the
  dataset version calls the intended fruit (it is blind to variety: one perfect apple repeated scores 100%);
* **fid**: the Fréchet distance between real and generated images in the classifier's feature space (its
  penultimate layer, FEATURE_DIM numbers per image), computed by torchmetrics' FrechetInceptionDistance given
  these features through a custom feature extractor (so no Inception network and no download is needed);
* **precision / recall** (Kynkäänniemi et al. 2019) and **density / coverage** (Naeem et al. 2020): k-nearest-
  neighbour manifolds in the same feature space. Precision/density ask "do the fakes lie where real drawings
  are?", recall/coverage ask "are all kinds of real drawings reached?": mode collapse shows as low recall and
  coverage while recognizability stays high.

The classifier is trained once per dataset version and resolution (a few seconds on a CPU) and cached in
models/evaluators/classifier_version<V>_<R>px.pt, with a hash of its training data so a changed dataset
retrains it. Its held-out accuracy on REAL drawings it never saw (augmented copies of those drawings are kept
out of training too) tells how far its verdicts can be trusted.

Features are divided by one scale fixed at training time (the spread of the real features), so Fréchet
distances are in units of "real-drawing variance" and comparable between runs of the same dataset.
"""
from __future__ import annotations

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

import model_store
import pictures
from safe_files import atomic_torch_save
from user_io import UserError

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
    path = classifier_path(workdir, dataset_version, resolution)
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
        out = {
            "recognizability": (probs.argmax(dim=1) == target).double().mean().item() if len(feats) else math.nan,
            "confidence": probs[:, target].double().mean().item() if len(feats) else math.nan,
            "fid": self._fid_vs_real(fruit, feats),
        }
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
        pred = self.classifier.logits_from_features(feats).argmax(dim=1)
        ref["recognizability_all_real"] = (pred == self.label[fruit]).double().mean().item() if m else math.nan
        held = getattr(self.classifier, "heldout_accuracy_by_fruit", {}) or {}
        ref["heldout_recognizability"] = held.get(fruit)
        noise = torch.rand(max(m, 2), *real.shape[1:], generator=torch.Generator().manual_seed(NOISE_SEED)) * 2 - 1
        ref["fid_uniform_noise"] = self._fid_vs_real(fruit, _features(self.classifier, noise, self.device))
        self._reference[fruit] = ref
        return dict(ref)


def quality_score(metrics: Mapping) -> float:
    """One number per evaluation, higher is better: how the trainer picks each fruit's "best" checkpoint.

        score = recognizability + coverage - 0.25 * ln(1 + fid)

    recognizability (0..1) rewards fakes the classifier takes for the intended fruit; coverage (0..1) rewards
    reaching the variety of the real drawings (it falls under mode collapse, which recognizability cannot
    see); the Fréchet distance (in real-feature-variance units) is penalised on a log scale so it refines
    the ranking without swamping the other two. A missing or NaN figure gives -inf (never "best").
    """
    try:
        recog, cover, fid = (float(metrics[k]) for k in ("recognizability", "coverage", "fid"))
    except (KeyError, TypeError, ValueError):
        return -math.inf
    if any(math.isnan(v) for v in (recog, cover, fid)) or fid < 0:
        return -math.inf
    return recog + cover - SCORE_FID_WEIGHT * math.log1p(fid)


# Columns of format_metrics_table: (key, header, format)
TABLE_COLUMNS = (
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
    skip = {"num_generated", "num_real", "k", "half_size"}
    labels: list = []
    for row in rows:
        for key, value in row.items():
            if key not in known and key not in skip and key not in labels and not isinstance(value, (dict, list)):
                labels.append(key)
    metrics = [(k, h, f) for k, h, f in TABLE_COLUMNS if any(k in row for row in rows)]
    header = labels + [h for _, h, _ in metrics]
    body = [[_cell(row.get(k), "{}" if not isinstance(row.get(k), float) else "{:.3g}") for k in labels]
            + [_cell(row.get(k), f) for k, _, f in metrics] for row in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)] if header else []
    lines = ["  ".join(str(c).ljust(w) if i < len(labels) else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(line, widths))).rstrip() for line in [header, *body]]
    return "\n".join(lines)

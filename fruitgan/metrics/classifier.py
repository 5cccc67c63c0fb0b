"""The quality classifier: a small CNN that tells the fruits apart, trained once per dataset version and cached
in models/evaluators/ with a hash of its training data (a changed dataset retrains it). The dataset's classifier
gives the feature space of FID and the k-NN metrics; the all-fruit recogniser (every fruit of rawData/, held-out
drawings excluded) judges recognisability. Features are divided by the spread of the real features, so Fréchet
distances are in units of "real-drawing variance"."""
from __future__ import annotations

import hashlib
import math
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Callable, Dict, Iterable, Mapping, Optional, Sequence, Tuple, Union

import torch
import torch.nn as nn
import torch.nn.functional as F

from fruitgan.metrics.images import EVAL_BATCH, WORK_RESOLUTION, few_cpu_threads, to_work_resolution
from fruitgan.metrics.real_drawings import RECOGNIZER_MAX_PER_FRUIT, render_rawdata_fruits
from fruitgan.models import folder as model_store
from fruitgan.util import pictures
from fruitgan.util.safe_files import atomic_torch_save
from fruitgan.util.user_io import UserError

CLASSIFIER_FORMAT = "fruitgan-classifier/1"
FEATURE_DIM = 64           # penultimate width: small, because a fruit may have only 25-40 real drawings
CLASSIFIER_WIDTH = 16      # channels of the first convolution (then x2, x4)
POOL_GRID = 3              # adaptive average pooling to 3x3 before the feature layer: any input size works
HEAD_DROPOUT = 0.3
MIN_FEATURE_SCALE = 1e-6
# Recognisability needs a choice between fruits: a one-class classifier calls everything that fruit.
MIN_RECOGNIZER_FRUITS = 2
MIN_RECOGNIZER_DRAWINGS = 10      # a fruit with fewer real drawings in rawData/ is left out of the recogniser


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


class FruitClassifier(nn.Module):
    """Small CNN: (B,1,R,R) in [-1,1], any R from 16 to 256 -> logits (B, F) over ``fruits``."""

    def __init__(self, fruits: Sequence[str], feature_dim: int = FEATURE_DIM, width: int = CLASSIFIER_WIDTH):
        super().__init__()
        self.fruits, self.feature_dim = tuple(fruits), feature_dim
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
        return self.embed(self.body(to_work_resolution(x)))

    def features(self, x: torch.Tensor) -> torch.Tensor:
        """(B,1,R,R) -> (B, FEATURE_DIM): the space of FID, precision/recall, density/coverage."""
        return self.raw_features(x) / self.feature_scale

    def logits_from_features(self, feats: torch.Tensor) -> torch.Tensor:
        return self.head(feats * self.feature_scale)          # (B, F)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.head(self.raw_features(x))                # (B, F)


# --------------------------------------------------------------------------------------------- training
def classifier_path(workdir: Path, dataset_version: str, resolution: int) -> Path:
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
            value = (extra or {}).get(fruit)
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


def _isolated_rng(device: torch.device):
    """Seeding inside this context leaves the caller's (the GAN trainer's) random streams untouched."""
    devices = [device.index if device.index is not None else torch.cuda.current_device()] if device.type == "cuda" else []
    return torch.random.fork_rng(devices=devices)


@torch.no_grad()
def predict(classifier: FruitClassifier, images: torch.Tensor, device="cpu") -> Tuple[torch.Tensor, torch.Tensor]:
    """(N,1,R,R) -> (predicted class index (N,), softmax probabilities (N,F)), both on CPU."""
    device = torch.device(device)
    with few_cpu_threads(device):
        probs = classifier.head(features_of(classifier, images, device, scaled=False)).softmax(dim=1).cpu()
    return probs.argmax(dim=1), probs


@torch.no_grad()
def features_of(classifier: FruitClassifier, images: torch.Tensor, device: torch.device,
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
    feats = features_of(model, images, device, scaled=False)
    spread = feats.var(dim=0, unbiased=False).mean().sqrt() if feats.shape[0] > 1 else torch.ones(())
    model.feature_scale.fill_(float(max(spread.item(), MIN_FEATURE_SCALE)))
    return model


def _heldout_accuracy(model: FruitClassifier, fruits: Sequence[str], data: Mapping[str, _FruitData],
                      device: torch.device) -> Tuple[Optional[float], Dict[str, Optional[float]], Dict[str, int]]:
    counts = {f: int(data[f].heldout_idx.numel()) for f in fruits}
    hits = {f: int((predict(model, data[f].images[data[f].heldout_idx], device)[0] == i).sum())
            for i, f in enumerate(fruits)}
    by_fruit = {f: hits[f] / counts[f] if counts[f] else None for f in fruits}
    total = sum(counts.values())
    return (sum(hits.values()) / total if total else None), by_fruit, counts


def _load_cached(path: Path, fruits: Sequence[str], resolution: int, data_hash: Optional[str],
                 device: torch.device) -> Optional[Tuple[FruitClassifier, dict]]:
    """(classifier, _info) from the cache at ``path``, or None when it is missing, damaged or out of date."""
    if not path.is_file():
        return None
    try:
        payload = torch.load(path, map_location="cpu", weights_only=True)
    except Exception:               # damaged or foreign file: retrain (it is only a cache)
        return None
    expected = {"format": CLASSIFIER_FORMAT, "resolution": resolution, "feature_dim": FEATURE_DIM,
                "width": CLASSIFIER_WIDTH, **({} if data_hash is None else {"data_hash": data_hash})}
    if not isinstance(payload, dict) or any(payload.get(k) != v for k, v in expected.items()):
        return None
    stored = [str(f) for f in payload.get("fruits", [])]
    if sorted(stored) != sorted(fruits):
        return None
    with torch.random.fork_rng(devices=[]):        # building draws initial weights: keep the caller's stream
        model = FruitClassifier(stored)            # label order as trained
    try:
        model.load_state_dict(payload["state_dict"])
    except (KeyError, RuntimeError):
        return None
    model.heldout_accuracy_by_fruit = dict(payload.get("heldout_accuracy_by_fruit") or {})
    return model.to(device).eval(), _info(payload, path, trained=False)


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
    return found


# --------------------------------------------------------------------------------------------- all-fruit recogniser
def load_or_train_recognizer(workdir: Path, dataset_version: str, resolution: int,
                             exclude_key_ids: Sequence[str] = (),
                             exclude_images: Union[None, torch.Tensor, Iterable[torch.Tensor]] = None,
                             max_per_fruit: int = RECOGNIZER_MAX_PER_FRUIT, device="cpu", seed: int = 0,
                             train_config: Optional[ClassifierTrainConfig] = None,
                             log: Optional[Callable[[str], None]] = None,
                             formats="auto") -> Tuple[Optional[FruitClassifier], dict]:
    """The classifier that judges recognisability: every fruit of rawData/, never the dataset's held-out drawings
    (``exclude_*``, see render_rawdata_fruits). (classifier, info) as load_or_train_classifier, info with
    "rendered"; (None, {"note": why, ...}) with fewer than MIN_RECOGNIZER_FRUITS usable fruits."""
    images, details = render_rawdata_fruits(workdir, resolution, exclude_key_ids, exclude_images, max_per_fruit,
                                            formats)
    usable = {f: x for f, x in images.items() if x.shape[0] >= MIN_RECOGNIZER_DRAWINGS}
    if len(usable) < MIN_RECOGNIZER_FRUITS:
        found = ", ".join(f"{f} {d['count']}" for f, d in details.items()) or "none"
        return None, {"note": f"not enough fruits to judge recognisability: rawData/ has {MIN_RECOGNIZER_DRAWINGS}+ "
                              f"real drawings of {len(usable)} fruit(s) (found: {found}), need "
                              f"{MIN_RECOGNIZER_FRUITS}; put another fruit's Quick, Draw! file in rawData/",
                      "fruits": list(usable), "rendered": details}
    path = model_store.evaluator_path(workdir, dataset_version, resolution, kind="recognizer")
    model, info = _load_or_train_at(path, dataset_version, usable, None, None, device, seed, train_config, log)
    return model, {**info, "rendered": details}


def _info(payload: dict, path: Path, trained: bool) -> dict:
    counts = {k: dict(payload.get(k) or {}) for k in ("heldout_accuracy_by_fruit", "heldout_counts", "train_counts")}
    return {"fruits": list(payload["fruits"]), "heldout_accuracy": payload.get("heldout_accuracy"), **counts,
            "resolution": payload.get("resolution"), "created": payload.get("created"), "path": str(path),
            "trained": trained}


def load_or_train_classifier(workdir: Path, dataset_version: str, real_by_fruit: Mapping[str, torch.Tensor],
                             source_index_by_fruit: Optional[Mapping[str, torch.Tensor]] = None,
                             augmented_by_fruit: Optional[Mapping[str, torch.Tensor]] = None,
                             device="cpu", seed: int = 0, train_config: Optional[ClassifierTrainConfig] = None,
                             log: Optional[Callable[[str], None]] = None) -> Tuple[FruitClassifier, dict]:
    """(classifier, _info) of the dataset version: cached, or trained (seconds) and cached. ``real_by_fruit``:
    {fruit: (N,1,R,R) in [-1,1]}; images made from a held-out drawing (per ``augmented_by_fruit``/
    ``source_index_by_fruit``) are never trained on."""
    resolution = int(next(iter(real_by_fruit.values())).shape[-1]) if real_by_fruit else 0
    return _load_or_train_at(classifier_path(workdir, dataset_version, resolution),
                             dataset_version, real_by_fruit, source_index_by_fruit, augmented_by_fruit,
                             device, seed, train_config, log)


def _load_or_train_at(path: Path, dataset_version: str, real_by_fruit: Mapping[str, torch.Tensor],
                      source_index_by_fruit, augmented_by_fruit, device, seed: int,
                      train_config: Optional[ClassifierTrainConfig], log) -> Tuple[FruitClassifier, dict]:
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
        return cached
    gen = torch.Generator().manual_seed(seed)
    data = {f: _split_fruit(real_by_fruit[f].detach().cpu(), (augmented_by_fruit or {}).get(f),
                            (source_index_by_fruit or {}).get(f), cfg.heldout_fraction, gen) for f in fruits}
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

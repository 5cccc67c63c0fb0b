"""Figures in the quality classifier's feature space: recognizability (blind to variety), FID (torchmetrics, fed
these features: no Inception download), precision/recall and density/coverage (k-NN manifolds: mode collapse
shows as low recall and coverage while recognizability stays high)."""
from __future__ import annotations

import functools
import math
from typing import Dict, Mapping, Optional, Sequence

import torch
import torch.nn as nn

from fruitgan.metrics.classifier import MIN_RECOGNIZER_FRUITS, FruitClassifier, features_of
from fruitgan.metrics.images import few_cpu_threads
from fruitgan.util.user_io import UserError

NEAREST_K = 5              # k of the k-NN manifolds (Naeem et al. use 5)
REFERENCE_SEED = 12345     # fixed split of the real drawings into two halves for the real-vs-real reference
NOISE_SEED = 54321         # uniform-noise anchor in reference()
ONE_CLASS_NOTE = ("not enough fruits to judge recognisability: the classifier knows only {fruits}; "
                  "put another fruit's Quick, Draw! drawings in rawData/")


def _precomputed_features(num_features: int) -> nn.Module:
    """torchmetrics' FID extractor (it reads ``num_features``) for features already computed: one forward pass."""
    extractor = nn.Identity()
    extractor.num_features = num_features
    return extractor


def _with_few_threads(method):
    @functools.wraps(method)
    def wrapper(self, *args, **kwargs):
        with few_cpu_threads(self.device):
            return method(self, *args, **kwargs)
    return wrapper


def _kth_distance(dist: torch.Tensor, k: int) -> torch.Tensor:
    """Distance of each row's point to its k-th nearest neighbour in its own set (dist (N,N), self at 0)."""
    return dist.kthvalue(k + 1, dim=1).values                                  # (N,): +1 skips the point itself


def manifold_metrics(real: torch.Tensor, fake: torch.Tensor, k: int = NEAREST_K) -> dict:
    """Precision/recall (Kynkäänniemi et al.) and density/coverage (Naeem et al.) of ``fake`` (N,D) vs ``real``
    (M,D); a point's ball reaches its k-th nearest neighbour in its own set (k shrinks for tiny sets)."""
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
    return {"precision": inside_real.any(dim=0).double().mean().item(),
            "recall": inside_fake.any(dim=1).double().mean().item(),
            "density": (inside_real.double().sum(dim=0) / k_real).mean().item(),
            "coverage": (d_rf.min(dim=1).values < real_radius).double().mean().item(), "k": k_real}


class QualityEvaluator:
    """Quality figures of generated images against ``real_by_fruit`` {fruit: (M,1,R,R) in [-1,1]}, per fruit."""

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
        self._extractor = _precomputed_features(classifier.feature_dim)
        self._real_features: Dict[str, torch.Tensor] = {}
        self._fid_by_fruit: Dict[str, object] = {}
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
            self._real_features[fruit] = features_of(self.classifier, self.real[fruit], self.device)
        return self._real_features[fruit]

    @torch.no_grad()
    def _fid(self, real: torch.Tensor, fake: torch.Tensor, fruit: Optional[str] = None) -> float:
        """FID of two feature sets, NaN under 2 each; with ``fruit``, ``real`` is its real features, whose
        statistics are kept for the next call."""
        from torchmetrics.image.fid import FrechetInceptionDistance

        if real.shape[0] < 2 or fake.shape[0] < 2:
            return math.nan
        metric = self._fid_by_fruit.get(fruit)
        if metric is None:
            metric = FrechetInceptionDistance(feature=self._extractor, reset_real_features=False).to(self.device)
            metric.update(real, real=True)
            if fruit is not None:
                self._fid_by_fruit[fruit] = metric
        metric.reset()                                     # drops the previous fakes, keeps the real statistics
        metric.update(fake, real=False)
        return max(float(metric.compute()), 0.0)           # tiny negative values are round-off

    @_with_few_threads
    @torch.no_grad()
    def evaluate(self, fruit: str, generated: torch.Tensor) -> dict:
        """Figures for ``generated`` (N,1,R,R) in [-1,1] meant to be ``fruit`` (plain floats, JSON-ready)."""
        self._check(fruit, generated)
        feats = features_of(self.classifier, generated, self.device)                  # (N, FD)
        probs = self.classifier.logits_from_features(feats).softmax(dim=1)          # (N, F)
        target = self.label[fruit]
        if self.recognizes:
            mean = lambda hits: hits.double().mean().item() if len(feats) else math.nan
            out = {"recognizability": mean(probs.argmax(dim=1) == target), "confidence": mean(probs[:, target])}
        else:      # no number at all (not even None): callers read a missing figure as "not measured"
            out = {"recognizability_note": self.recognizability_note}
        out["fid"] = self._fid(self.real_features(fruit), feats, fruit)
        out.update(manifold_metrics(self.real_features(fruit), feats))
        return {**out, "num_generated": int(generated.shape[0]), "num_real": int(self.real[fruit].shape[0])}

    @_with_few_threads
    @torch.no_grad()
    def reference(self, fruit: str) -> dict:
        """What real drawings score against each other (one random half against the other: small halves inflate
        FID), the classifier's accuracy on them, and FID of uniform noise: the yardstick for ``evaluate``."""
        if fruit in self._reference:
            return dict(self._reference[fruit])
        if fruit not in self.label:
            raise UserError(f"no reference for {fruit!r}: this evaluator measures {', '.join(self.fruits)}")
        real = self.real[fruit]
        m = real.shape[0]
        order = torch.randperm(m, generator=torch.Generator().manual_seed(REFERENCE_SEED))
        feats = self.real_features(fruit)                                           # (M, FD)
        half_a, half_b = feats[order[: m // 2]], feats[order[m // 2:]]
        ref = {"num_real": int(m), "half_size": int(m // 2), "fid_real_halves": self._fid(half_a, half_b)}
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
        ref["fid_uniform_noise"] = self._fid(feats, features_of(self.classifier, noise, self.device), fruit)
        self._reference[fruit] = ref
        return dict(ref)

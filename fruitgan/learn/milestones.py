"""How real a run's fakes look at its milestones, and which milestone is each fruit's best.

The trainer hands this part its datasets once (``setup``) and a group's networks at every milestone
(``figures``); it gets back plain dicts for the histories. What is measured (fruitgan/metrics/):

* on the fruit's **validation part** of the held-out drawings, at every milestone: a cheap two-sample check
  (``val_``-prefixed figures: the test at two_sample.CHECK power), which only
  ranks the checkpoints; the best checkpoint is the milestone where it is lowest;
* on the **test part**, once the run ends, for the best checkpoint only (``test_quality``): the figure
  the README, the model table and the report show, measured on drawings and fakes that took part in no
  choice;
* without a split, the classifier's figures (recognisability by the all-fruit recogniser, FID,
  precision/recall, density/coverage) against the fruit's real drawings, and a note where a figure needs
  held-out drawings.

Memory stays bounded whatever the dataset's size: the classifiers and the reference features use at most
a few thousand drawings per fruit (a seeded choice), and the memorisation ratio walks the training images
in blocks of their stored uint8 pixels.
"""
from __future__ import annotations

import time
from typing import Callable, Dict, List, Optional

import torch

from fruitgan.metrics import classifier as fc
from fruitgan.metrics import memorisation, scores, two_sample
from fruitgan.metrics.features import QualityEvaluator
import gan_model as gm
from fruitgan.data.heldout_split import VALIDATION_PREFIX
from fruitgan.learn.config import SEED_STRIDE
from fruitgan.models.loading import read_generator

EVAL_SEED_OFFSET = 7919           # evaluation noise comes from its own stream, so it never shifts training RNG
TEST_SEED_OFFSET = 104729         # ... and the test part's fakes from another: never the validation's
CLASSIFIER_MAX_IMAGES = 2000      # images per fruit the quality classifier trains on (a seeded choice)
CLASSIFIER_SAMPLE_SEED = 0
REFERENCE_MAX_REAL = 2000         # real drawings per fruit the classifier figures compare with


def classifier_inputs(datasets: dict):
    """Each fruit's images for the dataset's quality classifier (at most CLASSIFIER_MAX_IMAGES, a choice seeded
    alike for every caller, so the trainer and generate_images.py share one cached classifier), which of them
    are augmented and, as positions in that choice, the real drawing each comes from."""
    images, augmented, sources = {}, {}, {}
    for f, ds in datasets.items():
        pick = ds.sample_index(torch.arange(len(ds)), CLASSIFIER_MAX_IMAGES, CLASSIFIER_SAMPLE_SEED)
        position = torch.full((len(ds),), -1, dtype=torch.long)
        position[pick] = torch.arange(pick.numel())
        source = position[ds.source_index[pick]]
        images[f] = ds.images_at(pick)
        augmented[f] = ds.augmented[pick]
        # A copy whose drawing was not chosen is its own source: it cannot leak a held-out drawing.
        sources[f] = torch.where(source >= 0, source, torch.arange(pick.numel()))
    return images, augmented, sources


class MilestoneQuality:
    """Quality figures of a run's fruits; inactive (no figures, no time) when the run has --no-eval."""

    def __init__(self, workdir, dataset_version: str, datasets: dict, fruits: List[str], device, seed: int,
                 eval_samples: int, log: Callable[[str], None] = print, active: bool = True):
        self.workdir, self.version, self.datasets = workdir, dataset_version, datasets
        self.fruits, self.device, self.seed = fruits, device, seed
        self.eval_samples, self.log, self.active = eval_samples, log, active
        self.evaluator = self.recognizer = None
        self.recognizer_info: dict = {}
        self.unit_seconds = (0.0, 0.0)     # a two-sample step's and a memorisation query's, as last measured

    # ------------------------------------------------------------------ set-up
    def _capped(self, ds, index: torch.Tensor, cap: int) -> torch.Tensor:
        return ds.sample_index(index, cap, self.seed)

    def setup(self, states: dict) -> None:
        """Train or load the classifiers and store each fruit's reference figures in its history."""
        if not self.active:
            return
        images, augmented, sources = classifier_inputs(self.datasets)
        classifier, info = fc.load_or_train_classifier(self.workdir, self.version, images,
                                                        source_index_by_fruit=sources, augmented_by_fruit=augmented,
                                                        device=self.device, seed=self.seed)
        del images
        real = {f: ds.images_at(self._capped(ds, ds.real_index, REFERENCE_MAX_REAL))
                for f, ds in self.datasets.items()}
        self.evaluator = QualityEvaluator(classifier, list(self.datasets), real, device=self.device)
        self._setup_recognizer()
        for f in self.fruits:
            ref = self.evaluator.reference(f)
            if self.recognizer is not None:
                ref.update(self._recognizer_reference(f))
            states[f].history["reference_quality"] = ref
        acc = info.get("heldout_accuracy")
        self.log(f"quality classifier: held-out accuracy on real drawings "
                 f"{acc:.1%}" if isinstance(acc, float) else "quality classifier ready")

    def _setup_recognizer(self) -> None:
        """The all-fruit recogniser (rawData/, this version's held-out drawings excluded, in the dataset's
        formats); None with a note when rawData/ has too few fruits (no one-class verdicts)."""
        held = (ds.pixels[ds.heldout_index] for ds in self.datasets.values() if ds.has_split)   # a fruit at a time
        formats = {f: d.metadata["formats"] for f, d in self.datasets.items()
                   if isinstance(d.metadata.get("formats"), list)}
        resolution = next(iter(self.datasets.values())).resolution
        self.recognizer, self.recognizer_info = fc.load_or_train_recognizer(
            self.workdir, self.version, resolution, exclude_images=held,
            formats=formats, device=self.device, seed=self.seed, log=self.log)
        if self.recognizer is None:
            self.log(f"all-fruit recogniser: {self.recognizer_info['note']} (recognisability falls back to the "
                     "dataset's classifier, refused when it knows one fruit only)")

    def _recognition(self, fruit: str, images: torch.Tensor) -> dict:
        """recognizability/confidence of ``images`` by the all-fruit recogniser, or a note why there is none."""
        if fruit not in self.recognizer.fruits:
            return {"recognizability_note": f"the recogniser has too few real {fruit} drawings in rawData/ to know it"}
        if images.shape[0] == 0:
            return {}
        _, probs = fc.predict(self.recognizer, images, self.device)      # (N, F)
        label = self.recognizer.fruits.index(fruit)
        return {"recognizability": (probs.argmax(dim=1) == label).double().mean().item(),
                "confidence": probs[:, label].double().mean().item()}

    def _recognizer_reference(self, fruit: str) -> dict:
        """The recogniser on this fruit's held-out real drawings (never trained on): its verdicts' ceiling."""
        ds = self.datasets[fruit]
        found = self._recognition(fruit, ds.images_at(self._capped(ds, ds.heldout_index, REFERENCE_MAX_REAL)))
        if "recognizability" not in found:
            return {"heldout_recognizability": None,
                    "recognizability_note": found.get("recognizability_note", ds.split_note),
                    **self._recognizer_pooled_reference()}
        return {"heldout_recognizability": found["recognizability"], "recognizability_note": None}

    def _recognizer_pooled_reference(self) -> dict:
        """Without a held-out split, the recogniser's accuracy on the real drawings it held out of its own
        training, all fruits pooled: per fruit they are a handful (5 of 25), too few to give one by one."""
        acc = self.recognizer_info.get("heldout_accuracy")
        count = sum((self.recognizer_info.get("heldout_counts") or {}).values())
        if not isinstance(acc, float) or not count:
            return {}
        return {"recognizer_heldout_accuracy": acc, "recognizer_heldout_count": int(count)}

    # ------------------------------------------------------------------ figures
    def _noise(self, n_fruits: int, count: int, offset: int, epoch: int, nz: int) -> torch.Tensor:
        gen = torch.Generator().manual_seed(self.seed * SEED_STRIDE + offset + epoch)
        return torch.randn(n_fruits, count, nz, generator=gen).to(self.device)

    def heldout_figures(self, fruit: str, part: torch.Tensor, fakes: torch.Tensor, power: two_sample.Power) -> dict:
        """The two-sample test at ``power`` and the memorisation ratio of ``fakes`` against the held-out
        drawings ``part``."""
        ds = self.datasets[fruit]
        if not ds.has_split:
            return {"two_sample_accuracy": None, "two_sample_note": ds.split_note,
                    "memorisation_ratio": None, "memorisation_note": ds.split_note}
        real = ds.images_at(self._capped(ds, part, power.max_real))   # a full download's part is large
        kept = fakes[:memorisation.MEMORISATION_MAX_GENERATED]
        t0 = time.perf_counter()
        found = two_sample.two_sample_test(real, fakes, epochs=power.epochs)
        t1 = time.perf_counter()
        found.update(memorisation.memorisation_ratio(kept, ds.pixels, real, train_rows=ds.train_index))
        # The end's test part is priced by these: the test's cost grows with its steps, the memorisation's with
        # its queries (each walks the whole training part).
        steps = two_sample.two_sample_steps(real.shape[0], power)
        self.unit_seconds = ((t1 - t0) / steps if steps else 0.0,
                             (time.perf_counter() - t1) / (kept.shape[0] + real.shape[0]))
        return found

    def two_sample_fakes(self, group: List[str], model, offset: int, epoch: int, part_of,
                         power: two_sample.Power) -> Dict[str, torch.Tensor]:
        """{fruit: fakes} for the two-sample test at ``power`` of each fruit with a split, as many as its part
        needs."""
        need = max((min(part_of(self.datasets[f]).numel(), power.max_real)
                    for f in group if self.datasets[f].has_split), default=0)
        if not need:
            return {}
        samples = model.generate(self._noise(len(group), need, offset, epoch, model.config.noise_dim))
        return {f: samples[i].float().cpu() for i, f in enumerate(group) if self.datasets[f].has_split}

    def figures(self, group: List[str], model, epoch: int) -> Dict[str, dict]:
        """{fruit: figures} of ``model`` (a GroupedGAN of ``group``) at ``epoch``: the classifier figures,
        recognisability and, on the validation part, the two-sample test and memorisation ratio."""
        noise = self._noise(len(group), self.eval_samples, EVAL_SEED_OFFSET, epoch, model.config.noise_dim)
        samples = model.generate(noise)                                     # (F, S, 1, R, R)
        check = two_sample.CHECK
        held = self.two_sample_fakes(group, model, EVAL_SEED_OFFSET + 1, epoch, lambda ds: ds.validation_index, check)
        out = {}
        for i, f in enumerate(group):
            fakes = samples[i].float()
            metrics = {"epoch": epoch, **self.evaluator.evaluate(f, fakes)}
            if self.recognizer is not None:
                # Recognisability from the all-fruit recogniser (never a one-class classifier).
                for key in ("recognizability", "confidence", "recognizability_note"):
                    metrics.pop(key, None)
                metrics.update(self._recognition(f, fakes))
            else:   # fallback: the dataset classifier's verdict (refused by it when it knows one fruit only)
                metrics["recognizer_note"] = self.recognizer_info["note"]
            found = self.heldout_figures(f, self.datasets[f].validation_index, held.get(f, fakes.cpu()), check)
            metrics.update({VALIDATION_PREFIX + k: v for k, v in found.items()})
            out[f] = metrics
        return out

    def test_figures(self, fruit: str, generator_model, epoch: int) -> Optional[dict]:
        """The reported figures: the test part against ``generator_model``'s fakes (a one-fruit GroupedGAN
        holding the checkpoint of ``epoch``); None without a split."""
        ds = self.datasets[fruit]
        if not (self.active and ds.has_split):
            return None
        t0 = time.perf_counter()
        full = two_sample.FULL
        fakes = self.two_sample_fakes([fruit], generator_model, TEST_SEED_OFFSET, epoch, lambda d: d.test_index, full)
        figures = {"epoch": epoch, "part": "test", **self.heldout_figures(fruit, ds.test_index, fakes[fruit], full)}
        figures["seconds"] = round(time.perf_counter() - t0, 1)
        return figures

    def measure_best_on_test(self, states: dict, store, device) -> None:
        """Each fruit's best checkpoint (``store``'s best/ generator) measured on the test part, once per
        best epoch: history["test_quality"], the reported figures."""
        for f, s in states.items():
            best, known = s.history.get("best_epoch"), s.history.get("test_quality") or {}
            if best is None or known.get("epoch") == best:
                continue
            net, _ = read_generator(store, f, best=True)
            figures = self.test_figures(f, OneGenerator(net.to(device)), best)
            if figures is not None:
                s.history["test_quality"] = figures

    def final_seconds(self, group: List[str]) -> float:
        """What the end's test-part measurements cost: the two-sample test's steps and the memorisation's queries
        on each fruit's test part, at the unit costs the last ``figures`` call measured (0 before one, or
        without evaluation)."""
        per_step, per_query = self.unit_seconds if self.active else (0.0, 0.0)
        parts = [min(self.datasets[f].test_index.numel(), two_sample.FULL.max_real) for f in group]   # real, fakes
        return sum(two_sample.two_sample_steps(n, two_sample.FULL) * per_step
                   + (min(n, memorisation.MEMORISATION_MAX_GENERATED) + n) * per_query for n in parts)

    # ------------------------------------------------------------------ the best checkpoint
    @staticmethod
    def score(metrics: dict) -> float:
        """scores.quality_score on the figures that may choose: the validation part's, never the test's."""
        chosen = {k[len(VALIDATION_PREFIX):]: v for k, v in metrics.items() if k.startswith(VALIDATION_PREFIX)}
        plain = {k: v for k, v in metrics.items() if not k.startswith(VALIDATION_PREFIX)
                 and k not in ("two_sample_accuracy", "memorisation_ratio")}
        return scores.quality_score({**plain, **chosen})


class OneGenerator:
    """A plain gan_model.Generator (e.g. a fruit's best/ checkpoint) seen as a one-fruit group: what
    MilestoneQuality.test_figures draws from."""

    def __init__(self, net):
        self.net, self.config = net, net.config

    def generate(self, noise: torch.Tensor) -> torch.Tensor:
        """(1, B, nz) -> (1, B, 1, R, R), eval mode, in bounded batches."""
        return gm.generate(self.net, noise[0]).unsqueeze(0)

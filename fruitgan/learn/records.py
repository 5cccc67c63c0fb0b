"""The JSON and text records of a training run: its settings, each fruit's history, the summary, the costs.

Written through model_store (atomically) with every checkpoint, so the files on disk always describe the
same epoch. Under torchrun each rank writes its own fruits' histories and rank 0 gathers every rank's
fruits into the model-wide files (config, summary, cost report, description, the models index).
"""
from __future__ import annotations

from datetime import datetime, timezone
from typing import List, Optional

import cost_analysis_training as cost_mod
from fruitgan.models.store import ModelFolder, update_index


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_history(cfg, fruit: str, ds, steps_per_epoch: int) -> dict:
    """A fruit's training history before its first epoch: what it trains on, then rows as epochs end."""
    return {"fruit": fruit, "model_name": cfg.model_name, "dataset_version": cfg.dataset_version,
            "num_images": len(ds), "num_real_images": int(ds.real_index.numel()),
            "num_train_images": int(ds.train_index.numel()), "num_heldout_real_images": int(ds.heldout_index.numel()),
            "num_validation_images": int(ds.validation_index.numel()), "num_test_images": int(ds.test_index.numel()),
            "split_note": ds.split_note, "steps_per_epoch": steps_per_epoch, "epochs": [], "quality": [],
            "reference_quality": None, "best_epoch": None, "test_quality": None}


class RunRecords:
    """Writes one run's records. ``trainer`` provides the run's settings and per-fruit states."""

    def __init__(self, trainer):
        self.t = trainer

    @property
    def store(self) -> ModelFolder:
        return self.t.store

    def resolved_settings(self) -> dict:
        """The run's settings as it trains them: the device and arithmetic resolved, with what was asked."""
        t = self.t
        return {"model_name": t.cfg.model_name, **t.cfg.to_dict(), "fruits": t.all_fruits,
                "resolution": t.resolution, "gan_config": t.gan_config.to_dict(), "steps_per_epoch_used": t.steps_per_epoch,
                "device": str(t.device), "requested_device": t.cfg.device,
                "requested_precision": t.requested_precision, "world_size": t.dist.world}

    def write_config(self) -> None:
        t = self.t
        if t.dist.is_main:
            self.store.write_config({**self.resolved_settings(), "dataset": self.dataset_info(),
                                     "created": t.created or now()})

    def dataset_info(self) -> dict:
        t = self.t
        return {"version": t.cfg.dataset_version, "resolution": t.resolution, "fruits": t.all_fruits,
                "images": {f: len(d) for f, d in t.datasets.items()},
                "real_images": {f: int((~d.augmented).sum()) for f, d in t.datasets.items()},
                "augmentation": {f: d.metadata.get("augmentation") for f, d in t.datasets.items()},
                "quality": {f: d.metadata.get("quality") for f, d in t.datasets.items()}}

    def write_histories(self) -> None:
        for f, s in self.t.states.items():
            doc = dict(s.history)
            if s.cost:
                doc["cost"] = s.cost
                doc.update(cost_mod.cost_fields_for_history(s.cost))
            self.store.write_history(f, doc)

    def fruit_summary(self, f: str) -> dict:
        s = self.t.states[f]
        h = s.history
        last = h["epochs"][-1] if h["epochs"] else {}
        best = next((q for q in h["quality"] if q["epoch"] == h["best_epoch"]), None)
        return {"final": {k: last.get(k) for k in ("epoch", "d_loss", "g_loss", "d_real", "d_fake")},
                "best_epoch": h["best_epoch"], "quality": h["quality"][-1] if h["quality"] else None,
                "best_quality": best, "test_quality": h.get("test_quality"),
                "reference_quality": h["reference_quality"], "num_images": h["num_images"],
                "num_real_images": h["num_real_images"], "cost": s.cost}

    def _gathered(self, per_fruit: dict) -> dict:
        t = self.t
        if t.dist.world <= 1:
            return per_fruit
        import torch.distributed as dist

        parts: List[Optional[dict]] = [None] * t.dist.world
        dist.all_gather_object(parts, per_fruit)
        return {k: v for p in parts for k, v in p.items()}

    def write_summary(self, epochs_done: int, status: str) -> None:
        """training_summary_<name>.json (rank 0 gathers every rank's fruits under torchrun), the cost report,
        description.txt and the models index."""
        t = self.t
        per_fruit = self._gathered({f: self.fruit_summary(f) for f in t.fruits})
        if not t.dist.is_main:
            return
        sections = {f: v["cost"] for f, v in per_fruit.items() if v.get("cost")}
        summary = {"model_name": t.cfg.model_name, "dataset_version": t.cfg.dataset_version,
                   "resolution": t.resolution, "fruits": t.all_fruits, "epochs_done": epochs_done,
                   "epochs_planned": t.cfg.epochs, "status": status, "device": str(t.device),
                   "precision": t.cfg.precision, "world_size": t.dist.world,
                   "created": t.created or now(), "updated": now(), "per_fruit": per_fruit, **t.run_timing}
        if sections:
            settings = self.resolved_settings()
            report = cost_mod.build_cost_report(sections, self.store.path, settings, t.pricing)
            summary["cost"] = {k: report[k] for k in report if k not in ("per_fruit", "fruits")}
            self.store.write_cost_report(report)
            self.store.write_description(cost_mod.description_text(
                t.cfg.description, self.dataset_info(), settings, sections, report))
        self.store.write_summary(summary)
        update_index(t.workdir, t.cfg.model_name)     # models_index.json follows the run as it goes

    def where_to_look(self, done: int, status: str) -> List[str]:
        """The lines that end a run: where a student finds what it made."""
        s, name, first = self.store, self.t.cfg.model_name, self.t.fruits[0]
        return [f"model saved in {s.path} (status: {status}, epoch {done} of {self.t.cfg.epochs})",
                f"  images by epoch: {s.progress_grid_path(first, 1).parent} (a folder per fruit)",
                f"  training plots:  {s.history_plot_path(first)} (a plot per fruit), {s.all_histories_plot_path()}",
                f"  new images:      python generate_images.py {name} {first}"]

    def mark_interrupted(self, done: int) -> None:
        """Say so in the summary; everything else stays as the last checkpoint's write left it."""
        if not self.t.dist.is_main:
            return
        summary = self.store.read_summary()
        if summary is None:
            return
        summary.update(status="interrupted", epochs_done=done, updated=now())
        self.store.write_summary(summary)

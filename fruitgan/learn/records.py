"""The JSON and text records of a training run (settings, histories, summary, costs), written with every
checkpoint so the files on disk describe one epoch. Under torchrun each rank writes its own fruits'
histories; rank 0 gathers every rank's fruits into the model-wide files."""
from __future__ import annotations

from typing import Callable, Dict, List, Optional

from fruitgan.learn.cost_report import build_cost_report, cost_fields_for_history, description_text, format_cost_summary
from fruitgan.models.index import now, update_index
from fruitgan.models.sizes import kept_bytes


def new_history(cfg, fruit: str, ds, steps_per_epoch: int) -> dict:
    """A fruit's training history before its first epoch: what it trains on, then rows as epochs end."""
    return {"fruit": fruit, "model_name": cfg.model_name, "dataset_version": cfg.dataset_version,
            "num_images": len(ds), "num_real_images": int(ds.real_index.numel()),
            "num_train_images": int(ds.train_index.numel()), "num_heldout_real_images": int(ds.heldout_index.numel()),
            "num_validation_images": int(ds.validation_index.numel()), "num_test_images": int(ds.test_index.numel()),
            "split_note": ds.split_note, "steps_per_epoch": steps_per_epoch, "epochs": [], "quality": [],
            "reference_quality": None, "best_epoch": None, "test_quality": None}


def resolved_settings(cfg, data, device, requested_precision: str, world: int) -> dict:
    """The run's settings as it trains them: the device and arithmetic resolved, with what was asked."""
    return {"model_name": cfg.model_name, **cfg.to_dict(), "fruits": list(data.datasets),
            "resolution": data.resolution, "gan_config": data.gan_config.to_dict(),
            "steps_per_epoch_used": data.steps_per_epoch, "device": str(device), "requested_device": cfg.device,
            "requested_precision": requested_precision, "world_size": world}


def dataset_info(version: str, data) -> dict:
    datasets = data.datasets
    return {"version": version, "resolution": data.resolution, "fruits": list(datasets),
            "images": {f: len(d) for f, d in datasets.items()},
            "real_images": {f: int((~d.augmented).sum()) for f, d in datasets.items()},
            "augmentation": {f: d.metadata.get("augmentation") for f, d in datasets.items()},
            "quality": {f: d.metadata.get("quality") for f, d in datasets.items()}}


class RunRecords:
    """Writes one run's records from values: its resolved ``settings``, ``dataset`` description, this rank's fruit
    ``states`` (filled in as the run goes), the prices, and ``folder_bytes()`` ({part: bytes}: the storage cost)."""

    def __init__(self, store, dist, workdir, settings: dict, dataset: dict, states: dict, pricing,
                 folder_bytes: Optional[Callable[[], Dict[str, int]]] = None):
        self.store, self.dist, self.workdir, self.pricing = store, dist, workdir, pricing
        self.settings, self.dataset, self.states = settings, dataset, states
        self.folder_bytes = folder_bytes or (lambda: kept_bytes(store))
        self.created: Optional[str] = None

    def write_config(self, created: Optional[str]) -> str:
        """training_config_<name>.json (main rank); returns when the model was created (now, for a new one)."""
        self.created = created or now()
        if self.dist.is_main:
            self.store.write_config({**self.settings, "dataset": self.dataset, "created": self.created})
        return self.created

    def write_histories(self) -> None:
        for f, s in self.states.items():
            self.store.write_history(f, {**s.history, **(cost_fields_for_history(s.cost) if s.cost else {})})

    def fruit_summary(self, f: str) -> dict:
        s = self.states[f]
        h = s.history
        last = h["epochs"][-1] if h["epochs"] else {}
        best = next((q for q in h["quality"] if q["epoch"] == h["best_epoch"]), None)
        return {"final": {k: last.get(k) for k in ("epoch", "d_loss", "g_loss", "d_real", "d_fake")},
                "best_epoch": h["best_epoch"], "quality": h["quality"][-1] if h["quality"] else None,
                "best_quality": best, "test_quality": h.get("test_quality"),
                "reference_quality": h["reference_quality"], "num_images": h["num_images"],
                "num_real_images": h["num_real_images"], "cost": s.cost}

    def _gathered(self, per_fruit: dict) -> dict:
        if self.dist.world <= 1:
            return per_fruit
        import torch.distributed as dist

        parts: List[Optional[dict]] = [None] * self.dist.world
        dist.all_gather_object(parts, per_fruit)
        return {k: v for p in parts for k, v in p.items()}

    def write_summary(self, epochs_done: int, status: str, timing: dict) -> None:
        """training_summary_<name>.json with ``timing``, the cost report, description.txt and the models index."""
        per_fruit = self._gathered({f: self.fruit_summary(f) for f in self.states})
        if not self.dist.is_main:
            return
        c = self.settings
        sections = {f: v["cost"] for f, v in per_fruit.items() if v.get("cost")}
        summary = {"model_name": c["model_name"], "dataset_version": c["dataset_version"],
                   "resolution": c["resolution"], "fruits": c["fruits"], "epochs_done": epochs_done,
                   "epochs_planned": c["epochs"], "status": status, "device": c["device"],
                   "precision": c["precision"], "world_size": c["world_size"],
                   "created": self.created or now(), "updated": now(), "per_fruit": per_fruit, **timing}
        if sections:
            report = build_cost_report(sections, self.folder_bytes(), self.store.path, c, self.pricing)
            summary["cost"] = {k: report[k] for k in report if k not in ("per_fruit", "fruits")}
            self.store.write_cost_report(report)
            self.store.write_description(description_text(c["description"], self.dataset, c, sections, report))
        self.store.write_summary(summary)
        update_index(self.workdir, c["model_name"])     # models_index.json follows the run as it goes

    def plot_histories(self, every_fruit: bool = False) -> None:
        """The history plots of this rank's fruits (and, ``every_fruit``, the all-fruit one on the main rank)."""
        from fruitgan.learn import plots
        for f, s in self.states.items():
            plots.plot_fruit_history(s.history, self.store.history_plot_path(f))
        if every_fruit and self.dist.is_main:
            histories = {f: self.states[f].history if f in self.states else self.store.read_history(f)
                         for f in self.settings["fruits"]}
            plots.plot_all_fruits({f: h for f, h in histories.items() if h}, self.store.all_histories_plot_path())

    def end_lines(self, done: int, status: str) -> List[str]:
        """The lines that end a run: each fruit's cost, and where a student finds what it made."""
        s, name, first = self.store, self.settings["model_name"], next(iter(self.states))
        costs = [format_cost_summary(f, st.cost) for f, st in self.states.items() if st.cost]
        return costs + [f"model saved in {s.path} (status: {status}, epoch {done} of {self.settings['epochs']})",
                        f"  images by epoch: {s.progress_grid_path(first, 1).parent} (a folder per fruit)",
                        f"  training plots:  {s.history_plot_path(first)} (a plot per fruit), "
                        f"{s.all_histories_plot_path()}",
                        f"  new images:      python generate_images.py {name} {first}"]

    def mark_interrupted(self, done: int) -> None:
        """Say so in the summary; everything else stays as the last checkpoint's write left it."""
        summary = self.store.read_summary() if self.dist.is_main else None
        if summary is not None:
            summary.update(status="interrupted", epochs_done=done, updated=now())
            self.store.write_summary(summary)

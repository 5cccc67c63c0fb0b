"""What a listing reports of a model (describe_model, list_models) and which of its figures are reported
(reported_figures: the model table, generate_images.py and the report show the same ones)."""
from __future__ import annotations

from pathlib import Path
from typing import List, Optional

from fruitgan.data.heldout_split import VALIDATION_PREFIX   # the validation part's figures chose the best checkpoint
from fruitgan.models.folder import INFO_DIR, ModelFolder, model_names, open_model, read_json
from fruitgan.util.safe_files import NAME_PATTERN


# Hand-edited records may hold anything: a listing keeps a field only when it has the type the field means.
def _text(value) -> Optional[str]:
    return value if isinstance(value, str) else None


def count_or_none(value) -> Optional[int]:
    return value if isinstance(value, int) and not isinstance(value, bool) and value >= 0 else None


def _record(value) -> Optional[dict]:
    return value if isinstance(value, dict) else None


def quality_of(folder: ModelFolder) -> dict:
    """{fruit: {"latest", "best", "best_epoch", "test", "reference"}}: the summary's quality records of each
    fruit (each None when missing); reported_figures(entry) gives what a table shows of one."""
    per_fruit = (folder.read_summary() or {}).get("per_fruit")
    return {fruit: {"latest": _record(rec.get("quality")), "best": _record(rec.get("best_quality")),
                    "best_epoch": count_or_none(rec.get("best_epoch")), "test": _record(rec.get("test_quality")),
                    "reference": _record(rec.get("reference_quality"))}
            for fruit, rec in (per_fruit.items() if isinstance(per_fruit, dict) else ())
            if isinstance(rec, dict) and NAME_PATTERN.match(str(fruit))}


HELDOUT_KEYS = ("two_sample", "memorisation")     # figures of the held-out tests (prefixes of their keys)
OLD_RUN_NOTE = ("measured on the drawings that chose this checkpoint (a run from before validation and test "
                "parts): optimistic, not shown; train again for a test-part figure")


def reported_figures(quality: dict) -> dict:
    """A fruit's figures as reported (model table, generate_images.py, the report): the best checkpoint's (the
    latest's when there is none) with the held-out tests measured on the test part, never the validation part's
    figures, which chose that checkpoint. ``quality``: one fruit's entry of describe_model's "quality"."""
    src = quality.get("best") or quality.get("latest") or {}
    rec = {k: v for k, v in src.items() if not k.startswith(VALIDATION_PREFIX)}
    test = quality.get("test") or {}
    if test:
        rec.update({k: v for k, v in test.items() if k.startswith(HELDOUT_KEYS)})
    elif any(k.startswith(VALIDATION_PREFIX) for k in src):
        # No test part yet (no split, or the run has not ended): the validation's note says why, if any.
        rec.update({k[len(VALIDATION_PREFIX):]: v for k, v in src.items()
                    if k.startswith(VALIDATION_PREFIX) and k.endswith("_note")})
    elif isinstance(src.get("two_sample_accuracy"), (int, float)):
        # A run from before the parts existed: its held-out figure chose the checkpoint it describes.
        rec = {k: v for k, v in rec.items() if not k.startswith(HELDOUT_KEYS)}
        rec["two_sample_note"] = OLD_RUN_NOTE
    return rec


def describe_model(workdir: Path, name: str) -> dict:
    """What list_models reports of one model: fields missing or of the wrong type are None."""
    folder = open_model(workdir, name)
    summary = folder.read_summary() or {}
    config = folder.read_config() or {}
    pick = lambda key: summary.get(key, config.get(key))
    version = pick("dataset_version")
    version = str(version) if isinstance(version, (str, int)) and not isinstance(version, bool) else None
    path = folder.config_path()         # the listing notes info/ records that are missing or unreadable
    problems = [] if path.exists() else [f"{INFO_DIR}/{path.name} is missing"]
    problems += [f"{INFO_DIR}/{p.name} is unreadable" for p in (path, folder.summary_path())
                 if p.exists() and read_json(p) is None]
    return {"name": name, "path": str(folder.path), "created": _text(pick("created")),
            "updated": _text(summary.get("updated")), "dataset_version": version,
            "resolution": count_or_none(pick("resolution")),
            "fruits": [f for f in folder.fruits() if NAME_PATTERN.match(f)],
            "epochs_done": count_or_none(summary.get("epochs_done")),
            "epochs_planned": count_or_none(summary.get("epochs_planned", config.get("epochs"))),
            "status": _text(summary.get("status")) or ("unknown" if not summary else None),
            "description": _text(config.get("description")), "quality": quality_of(folder),
            "saved_epochs": folder.saved_epochs(), "problems": problems}


def list_models(workdir: Path) -> List[dict]:
    """Every model in models/, sorted by name; see describe_model for the fields."""
    return [describe_model(workdir, name) for name in model_names(workdir)]

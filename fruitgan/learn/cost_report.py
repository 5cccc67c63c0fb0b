"""What the records say about a training's cost: the console summary per fruit, the cost fields of a fruit's
history, info/cost_analysis_report.json and the text of info/description.txt (model_store writes them)."""
from __future__ import annotations

import json
import os
from datetime import datetime, timezone
from typing import Any, List, Mapping

from fruitgan.learn.memory import BYTES_PER_GB
from fruitgan.learn.pricing import CURRENCY, HOURS_PER_MONTH, PricingConfig, format_money
from fruitgan.util.safe_files import BYTES_PER_MB, FRUITS

SECONDS_PER_HOUR = 3600.0
SECONDS_PER_MINUTE = 60.0
SUMMARY_RULE = "=" * 58  # width of the console summary's frame

FORMULA_TEXT = (
    f"A month is HOURS_PER_MONTH = {HOURS_PER_MONTH:g} hours (30 days).\n"
    "cost per hour = (cost_per_cpu_per_month x CPUs charged + cost_per_gb_ram_per_month x RAM GB charged)"
    " / HOURS_PER_MONTH\n"
    "compute cost = cost_per_cpu_per_month x CPUs charged / HOURS_PER_MONTH x training hours\n"
    "memory cost = cost_per_gb_ram_per_month x RAM GB charged / HOURS_PER_MONTH x training hours\n"
    "training cost = compute cost + memory cost\n"
    "storage cost = model folder size in GB x additional_storage_cost_per_gb (one month of storage)\n"
    "total cost = training cost + storage cost\n"
    "CPUs charged = torch.get_num_threads() capped at the CPUs available to the process (or as configured).\n"
    "RAM GB charged = the measured peak resident memory (RSS) of the training process; GB = 2^30 bytes.\n"
    "GPU memory is reported, not charged (the plan prices CPUs and RAM only).\n"
    "fixed_monthly_cost is the plan subscription the unit prices are derived from: reported, not added,\n"
    "  since adding it would charge the same CPUs and RAM twice.\n"
    "Fruits trained together in one segment split its time and cost equally; a resumed run adds to the\n"
    "  earlier totals."
)


def format_cost_summary(fruit: str, section: Mapping[str, Any]) -> str:
    """The console block shown after a fruit's training."""
    cost, hours, minutes = section["cost"], section["training_time_hours"], section["training_time_minutes"]
    lines = [SUMMARY_RULE, f"TRAINING COST SUMMARY FOR {fruit.upper()}", SUMMARY_RULE,
             f"Training time: {hours:.2f} hours ({minutes:.1f} minutes)",
             f"Peak memory: {section['peak_memory_gb']:.2f} GB", f"Total cost: {format_money(cost['total'])}",
             f"Cost per epoch: {format_money(cost['per_epoch'])}", f"Cost per hour: {format_money(cost['per_hour'])}",
             SUMMARY_RULE]
    return "\n".join(lines)


def build_cost_report(sections: Mapping[str, Mapping[str, Any]], kept: Mapping[str, int], folder: os.PathLike,
                      config_snapshot: Mapping[str, Any], pricing: PricingConfig) -> dict:
    """The content of info/cost_analysis_report.json for a whole model. ``kept``: what ``folder`` holds on disk,
    {part: bytes}, measured when the records are written; one month of it is the storage cost."""
    compute = sum(s["cost"]["compute"] for s in sections.values())
    memory = sum(s["cost"]["memory"] for s in sections.values())
    training, n = compute + memory, len(sections)
    seconds = sum(s["training_time_seconds"] for s in sections.values())
    hours = seconds / SECONDS_PER_HOUR
    epochs = sum(int(s["epochs"]) for s in sections.values())
    peak = max((int(s["peak_memory_bytes"]) for s in sections.values()), default=0)
    size_bytes = sum(kept.values())
    size_gb = size_bytes / BYTES_PER_GB
    storage = size_gb * pricing.additional_storage_cost_per_gb
    not_added = ("the plan subscription the per-CPU and per-GB prices are derived from; adding it would charge "
                 "the same CPUs and RAM twice")
    gpu_peak = max((int(s.get("peak_gpu_memory_bytes", 0)) for s in sections.values()), default=0)
    return {
        "currency": CURRENCY, "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fruits": list(sections),
        "breakdown": {"compute": compute, "memory": memory,
                      "storage": {"folder": str(folder), "size_bytes": size_bytes, "parts": dict(kept),
                                  "size_gb": size_gb, "cost_per_gb": pricing.additional_storage_cost_per_gb,
                                  "cost": storage, "period": "one month"},
                      "fixed_monthly_cost": {"amount": pricing.fixed_monthly_cost, "added": False, "why": not_added}},
        "totals": {"compute": compute, "memory": memory, "training": training, "storage": storage,
                   "total": training + storage},
        "training_hours": hours, "training_time_seconds": seconds,
        "training_time_minutes": seconds / SECONDS_PER_MINUTE, "epochs_total": epochs,
        "cost_per_epoch": training / epochs if epochs else 0.0, "cost_per_hour": training / hours if hours > 0 else 0.0,
        "cost_per_fruit": (training + storage) / n if n else 0.0,
        "average_time_per_fruit_hours": hours / n if n else 0.0,
        "peak_memory_bytes": peak, "peak_memory_gb": peak / BYTES_PER_GB, "peak_gpu_memory_bytes": gpu_peak,
        "per_fruit": {fruit: dict(section) for fruit, section in sections.items()},
        "pricing": pricing.to_dict(), "pricing_file": pricing.source, "hours_per_month": HOURS_PER_MONTH,
        "bytes_per_gb": BYTES_PER_GB, "formula": FORMULA_TEXT, "model_config": dict(config_snapshot),
    }


_LABELS = {"version": "Dataset version", "dataset_version": "Dataset version", "image_counts": "Images per fruit",
           "lr": "Learning rate", "learning_rate": "Learning rate"}     # the rest: the key, capitalised


def _label(key: str) -> str:
    if key in FRUITS:  # fruit names stay as the suite spells them everywhere else
        return key
    return _LABELS.get(key, key.replace("_", " ").capitalize())


def _render_value(key: str, value: Any) -> str:
    if key == "resolution" and isinstance(value, int) and not isinstance(value, bool):
        return f"{value}x{value} pixels"
    if isinstance(value, (list, tuple)):
        return ", ".join(str(v) for v in value)
    return str(value)


def _render_mapping(mapping: Mapping[str, Any], indent: str = "") -> List[str]:
    """``Label: value`` lines; nested dicts become indented blocks."""
    lines = []
    for key, value in mapping.items():
        if isinstance(value, Mapping):
            lines.append(f"{indent}{_label(key)}:")
            lines.extend(_render_mapping(value, indent + "  "))
        else:
            lines.append(f"{indent}{_label(key)}: {_render_value(key, value)}")
    return lines


def _heading(title: str) -> List[str]:
    return ["", title, "-" * len(title)]


def description_text(description: str, dataset_info: Mapping[str, Any], training_config: Mapping[str, Any],
                     sections: Mapping[str, Mapping[str, Any]], report: Mapping[str, Any]) -> str:
    """The text of info/description.txt: the user's description, the dataset, the training configuration, the
    statistics (time, memory, cost) and the formula. ``dataset_info`` and ``training_config`` are printed key by
    key (nested dicts indented), so the trainer may pass whatever it has."""
    n = len(sections) or 1
    totals, storage = report["totals"], report["breakdown"]["storage"]
    fixed = report["breakdown"]["fixed_monthly_cost"]["amount"]
    hours, epochs, cpus = report["training_hours"], report["epochs_total"], max(
        (s.get("cpus_charged", 0) for s in sections.values()), default=0)
    lines = ["Description", "-----------", description.strip() or "(no description given)"]
    lines += _heading("Dataset") + _render_mapping(dataset_info)
    lines += _heading("Training configuration") + _render_mapping(training_config)
    lines += _heading("Statistics")
    lines += [
        f"Total training time: {hours:.2f} hours ({report['training_time_minutes']:.1f} minutes)",
        f"Average time per fruit: {hours / n:.2f} hours ({report['training_time_minutes'] / n:.1f} minutes)",
        f"Peak memory: {report['peak_memory_gb']:.2f} GB",
        f"Training cost: {format_money(totals['training'])} (compute {format_money(totals['compute'])} + memory "
        f"{format_money(totals['memory'])}: {cpus:g} CPUs and the peak memory, over the {hours:.2f} training hours)",
        f"Storage cost: {format_money(totals['storage'])} (one month of the model folder as kept: "
        f"{storage['size_bytes'] / BYTES_PER_MB:.2f} MB; " + ", ".join(
            f"{part} {size / BYTES_PER_MB:.2f} MB" for part, size in storage.get("parts", {}).items() if size) + ")",
        f"Total cost: {format_money(totals['total'])} (training {format_money(totals['training'])} + one month of "
        f"storage {format_money(totals['storage'])})",
        f"Average training cost per fruit: {format_money(totals['training'] / n)}",
        f"Average training cost per epoch: {format_money(totals['training'] / epochs if epochs else 0.0)} "
        "(compute + memory, per fruit-epoch)",
        f"Fixed monthly cost (plan subscription, reported, not added): {format_money(fixed)}",
        f"Currency: {report.get('currency', CURRENCY)}",
    ]
    lines += _heading("Per fruit")
    lines += [f"{fruit}: {s['epochs']} epochs, {s['training_time_hours']:.2f} hours, peak {s['peak_memory_gb']:.2f} "
              f"GB, training cost {format_money(s['cost']['total'])}" for fruit, s in sections.items()]
    lines += _heading("Cost formula") + FORMULA_TEXT.splitlines()
    return "\n".join(lines) + "\n"


def cost_fields_for_history(section: Mapping[str, Any]) -> dict:
    """Fields merged into a fruit's history; ``cost`` (the full section) is ``previous`` on a resume."""
    cost = section["cost"]
    summary = {k: cost[k] for k in ("total", "per_epoch", "per_hour", "compute", "memory")}
    copied = ("training_time_seconds", "training_time_hours", "training_time_minutes", "peak_memory_gb")
    return {"cost_summary": {**summary, "currency": section.get("currency", CURRENCY)},
            **{k: section[k] for k in copied},
            "cost": json.loads(json.dumps(section))}       # a deep, JSON-clean copy

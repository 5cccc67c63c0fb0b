"""What training a model cost: time, peak memory and dollars, per fruit and per model.

The prices come from ``render_pricing_config.json`` (user-editable, USD). The formula:

    HOURS_PER_MONTH = 720                      (30 days x 24 h, the course's convention; not 730)
    compute per hour = cost_per_cpu_per_month    x CPUs charged      / HOURS_PER_MONTH
    memory per hour  = cost_per_gb_ram_per_month x RAM GB charged    / HOURS_PER_MONTH
    cost per hour    = compute per hour + memory per hour
    compute cost     = compute per hour x training hours
    memory cost      = memory per hour  x training hours
    training cost    = compute cost + memory cost
    storage cost     = size of the model folder in GB x additional_storage_cost_per_gb   (one month of storage)

- CPUs charged = the CPUs the training could use: torch.get_num_threads(), capped at the CPUs available to
  the process (os.sched_getaffinity, else os.cpu_count()); or the number configured with ``cpus=``.
- RAM GB charged = the measured PEAK resident memory (RSS) of the training process in GB, sampled by a
  background thread every 0.5 s and whenever the trainer calls ``sample()``. GB here is 2**30 bytes
  (memory and disk plans are sized in binary gigabytes). GPU memory is measured and reported, not charged:
  the plan prices only CPUs and RAM.
- ``fixed_monthly_cost`` is the plan's subscription from which the unit prices were derived
  (19/64 per CPU, 19/512 per GB): it is reported but NOT added, because adding it would charge the same
  CPUs and RAM twice.
- Several fruits trained together in one "segment" share the machine: the segment's time and cost are
  split equally among its fruits. A resumed run adds its new time and cost to the earlier totals.
"""
from __future__ import annotations

import argparse
import json
import math
import os
import sys
import threading
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Callable, Dict, Iterable, List, Mapping, Optional, Sequence

from fruitgan.util.safe_files import FRUITS
from fruitgan.util.user_io import UserError, run_main

HOURS_PER_MONTH = 720.0  # 30 days x 24 h: the course's convention for a "month" of a monthly price
SECONDS_PER_HOUR = 3600.0
SECONDS_PER_MINUTE = 60.0
BYTES_PER_GB = 1024 ** 3  # binary gigabyte (GiB), as RAM and disk plans are sized
BYTES_PER_MB = 1024 ** 2
DEFAULT_SAMPLE_INTERVAL_S = 0.5  # RSS sampling period: often enough to catch peaks, cheap on 2 cores
CURRENCY = "USD"
SUMMARY_RULE = "=" * 58  # width of the console summary's frame
MONEY_SIGNIFICANT_DIGITS = 3  # costs are tiny fractions of a dollar: show significant digits, not cents

DEFAULT_PRICING_PATH = Path(__file__).resolve().parent / "render_pricing_config.json"

PRICING_KEYS = (
    "fixed_monthly_cost",
    "cost_per_cpu_per_month",
    "cost_per_gb_ram_per_month",
    "additional_storage_cost_per_gb",
)

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


# ---------------------------------------------------------------------------------------------- pricing


@dataclass(frozen=True)
class PricingConfig:
    """Prices in USD, read from render_pricing_config.json."""

    fixed_monthly_cost: float  # the plan's subscription; reported, never added
    cost_per_cpu_per_month: float  # USD per CPU for a 720 h month
    cost_per_gb_ram_per_month: float  # USD per GB of RAM for a 720 h month
    additional_storage_cost_per_gb: float  # USD per GB of stored model for one month
    extra: Dict[str, Any] = field(default_factory=dict)  # any other keys in the file, kept as they are
    source: Optional[str] = None  # the file it came from (None when built in code)

    def to_dict(self) -> Dict[str, Any]:
        """The prices as in the file (extra keys included), for the report."""
        out: Dict[str, Any] = {key: getattr(self, key) for key in PRICING_KEYS}
        out.update(self.extra)
        return out


def _price_value(raw: Mapping[str, Any], key: str, path: Path) -> float:
    if key not in raw:
        raise UserError(f"pricing file {path}: missing key {key!r}; add it as a number (USD), e.g. \"{key}\": 0.1")
    value = raw[key]
    # bool is an int in Python but "true" is not a price.
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise UserError(f"pricing file {path}: {key!r} must be a number, got {json.dumps(value)}; write it without quotes")
    value = float(value)
    if not math.isfinite(value):
        raise UserError(f"pricing file {path}: {key!r} must be a finite number, got {value}")
    if value < 0:
        raise UserError(f"pricing file {path}: {key!r} must not be negative, got {value:g}")
    return value


def load_pricing(path: Optional[os.PathLike] = None) -> PricingConfig:
    """Read and check the pricing file; any problem is a one-line UserError naming the file (and key)."""
    path = Path(path) if path is not None else DEFAULT_PRICING_PATH
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(
            f"pricing file {path} not found; create it with the keys {', '.join(PRICING_KEYS)}"
        ) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"cannot read pricing file {path}: {exc}") from None
    try:
        raw = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(f"pricing file {path} is not valid JSON (line {exc.lineno}: {exc.msg}); fix it") from None
    if not isinstance(raw, dict):
        raise UserError(f"pricing file {path} must hold a JSON object with the keys {', '.join(PRICING_KEYS)}")
    values = {key: _price_value(raw, key, path) for key in PRICING_KEYS}
    extra = {key: value for key, value in raw.items() if key not in PRICING_KEYS}
    return PricingConfig(**values, extra=extra, source=str(path))


def hourly_rates(pricing: PricingConfig, cpus: float, ram_gb: float) -> Dict[str, float]:
    """USD per hour of training for ``cpus`` CPUs and ``ram_gb`` GB of RAM: compute, memory and total."""
    compute = pricing.cost_per_cpu_per_month * cpus / HOURS_PER_MONTH
    memory = pricing.cost_per_gb_ram_per_month * ram_gb / HOURS_PER_MONTH
    return {"compute": compute, "memory": memory, "total": compute + memory}


# --------------------------------------------------------------------------------------------- measuring


def process_rss_bytes() -> int:
    """The resident memory of this process now, in bytes."""
    import psutil

    return int(psutil.Process(os.getpid()).memory_info().rss)


def cuda_peak_bytes() -> int:
    """Peak CUDA memory allocated by this process (all devices), 0 when CUDA is not in use.

    Only asks torch when the program already imported it and initialised CUDA, so measuring never
    starts CUDA (or imports torch) by itself.
    """
    torch = sys.modules.get("torch")
    if torch is None or not torch.cuda.is_available() or not torch.cuda.is_initialized():
        return 0
    return int(sum(torch.cuda.max_memory_allocated(i) for i in range(torch.cuda.device_count())))


def reset_cuda_peak() -> None:
    """Start a new CUDA peak measurement (no-op without CUDA in use)."""
    torch = sys.modules.get("torch")
    if torch is not None and torch.cuda.is_available() and torch.cuda.is_initialized():
        for i in range(torch.cuda.device_count()):
            torch.cuda.reset_peak_memory_stats(i)


def available_cpus() -> int:
    """CPUs this process may run on (container/affinity aware)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):
        return max(1, os.cpu_count() or 1)


def measured_cpus() -> int:
    """CPUs the training uses: torch's thread count, never more than the CPUs available."""
    import torch

    return max(1, min(int(torch.get_num_threads()), available_cpus()))


class MemorySampler:
    """Keeps the peak of a memory reading (process RSS by default), sampled on demand and in the background.

    A background thread reads every ``interval_s`` so peaks between the trainer's own ``sample()`` calls
    (e.g. inside one long epoch) are still caught. ``reader`` and ``gpu_reader`` return bytes and can be
    replaced (tests). The GPU reading is a running maximum kept by CUDA itself, so it is read in the
    caller's thread only (``sample()``/``stop()``).
    """

    def __init__(
        self,
        interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
        reader: Optional[Callable[[], int]] = None,
        gpu_reader: Optional[Callable[[], int]] = None,
        background: bool = True,
    ):
        if not interval_s > 0:
            raise ValueError(f"interval_s must be > 0, got {interval_s}")
        self.interval_s = float(interval_s)
        self.reader = reader if reader is not None else process_rss_bytes
        self.gpu_reader = gpu_reader if gpu_reader is not None else cuda_peak_bytes
        self.background = background
        self.peak_bytes = 0
        self.peak_gpu_bytes = 0
        self.samples = 0  # how many RSS readings were taken
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def _read_rss(self) -> None:
        value = int(self.reader())
        with self._lock:
            self.samples += 1
            if value > self.peak_bytes:
                self.peak_bytes = value

    def sample(self) -> int:
        """Take a reading now (RSS and GPU); returns the peak RSS so far."""
        self._read_rss()
        gpu = int(self.gpu_reader())
        with self._lock:
            self.peak_gpu_bytes = max(self.peak_gpu_bytes, gpu)
            return self.peak_bytes

    def _run(self) -> None:
        while not self._stop.wait(self.interval_s):
            try:
                self._read_rss()
            except Exception:  # a failed reading must not kill training; the next one may work
                continue

    def start(self) -> "MemorySampler":
        """Take a first reading and, with ``background``, start the sampling thread."""
        self.sample()
        if self.background and self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="memory-sampler", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> int:
        """Stop the thread (if any), take a last reading and return the peak RSS in bytes."""
        if self._thread is not None:
            self._stop.set()
            self._thread.join()
            self._thread = None
        return self.sample()

    @property
    def running(self) -> bool:
        return self._thread is not None

    def __enter__(self) -> "MemorySampler":
        return self.start()

    def __exit__(self, *exc_info: Any) -> None:
        self.stop()


# ---------------------------------------------------------------------------------------------- tracking


@dataclass
class _Segment:
    """One group of fruits trained together, from begin() to end()."""

    fruits: List[str]
    start: float  # clock() at begin
    last_mark: float  # clock() at begin or at the last epoch_done
    epoch_seconds: List[float]  # wall time of each epoch of the segment (whole group)
    sampler: MemorySampler
    cpus: float
    previous: Dict[str, Optional[dict]]


def _seconds_to_section_times(seconds: float) -> Dict[str, float]:
    return {
        "training_time_seconds": seconds,
        "training_time_hours": seconds / SECONDS_PER_HOUR,
        "training_time_minutes": seconds / SECONDS_PER_MINUTE,
    }


def _number(section: Mapping[str, Any], key: str, fruit: str, default: Optional[float] = None) -> float:
    """A non-negative number from an earlier cost section (read back from JSON), or a UserError."""
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(
            f"earlier cost record for {fruit} has an invalid {key!r} ({value!r}); "
            "fix or delete the 'cost' entry of its training history"
        )
    return float(value)


def make_section(
    seconds: float,
    epochs: int,
    peak_bytes: int,
    peak_gpu_bytes: int,
    cpus: float,
    compute: float,
    memory: float,
    rate_per_hour: float,
    segments: int = 1,
) -> dict:
    """A cost section from raw totals (derived fields computed here, one place)."""
    hours = seconds / SECONDS_PER_HOUR
    total = compute + memory
    section = _seconds_to_section_times(seconds)
    section.update(
        {
            "epochs": int(epochs),
            "time_per_epoch_seconds": seconds / epochs if epochs else 0.0,
            "peak_memory_bytes": int(peak_bytes),
            "peak_memory_gb": peak_bytes / BYTES_PER_GB,
            "peak_gpu_memory_bytes": int(peak_gpu_bytes),
            "cpus_charged": cpus,
            "ram_gb_charged": peak_bytes / BYTES_PER_GB,
            "cost": {
                "compute": compute,
                "memory": memory,
                "total": total,
                "per_epoch": total / epochs if epochs else 0.0,
                # With no time measured, the rate itself is the honest "per hour".
                "per_hour": total / hours if hours > 0 else rate_per_hour,
            },
            "currency": CURRENCY,
            "segments": int(segments),
        }
    )
    return section


def add_sections(previous: Optional[Mapping[str, Any]], new: Mapping[str, Any], fruit: str = "?",
                 pricing: Optional["PricingConfig"] = None) -> dict:
    """Totals of an earlier section plus a new one (the next epoch, or a resume): times, epochs and compute
    add, peaks max. Memory is charged as the formula says, one figure: the RAM price x the larger peak (the
    "Peak memory" shown) x all the hours, so a run's peak, wherever it fell, is what it pays for. Without
    ``pricing`` (older callers) the memory costs add as computed. ``cpus_charged`` is the latest section's.
    """
    if not previous:
        return dict(new)
    prev_cost = previous.get("cost")
    if not isinstance(prev_cost, Mapping):
        raise UserError(
            f"earlier cost record for {fruit} has no 'cost' breakdown; fix or delete the 'cost' entry of its training history"
        )
    seconds = _number(previous, "training_time_seconds", fruit) + new["training_time_seconds"]
    epochs = int(_number(previous, "epochs", fruit)) + new["epochs"]
    peak = max(int(_number(previous, "peak_memory_bytes", fruit)), new["peak_memory_bytes"])
    gpu = max(int(_number(previous, "peak_gpu_memory_bytes", fruit, 0)), new["peak_gpu_memory_bytes"])
    compute = _number(prev_cost, "compute", fruit) + new["cost"]["compute"]
    if pricing is not None:
        memory = hourly_rates(pricing, 1.0, peak / BYTES_PER_GB)["memory"] * seconds / SECONDS_PER_HOUR
    else:
        memory = _number(prev_cost, "memory", fruit) + new["cost"]["memory"]
    segments = int(_number(previous, "segments", fruit, 1)) + new.get("segments", 1)
    return make_section(
        seconds, epochs, peak, gpu, new["cpus_charged"], compute, memory, new["cost"]["per_hour"], segments
    )


class CostTracker:
    """Measures training segments (time, peak memory) and turns them into per-fruit cost sections.

    Usage by the trainer, per group of fruits trained together::

        tracker.begin(["apple", "pear"], previous={"apple": old_section_or_None, ...})
        for each epoch: ... tracker.sample() every few steps ... ; tracker.epoch_done(["apple", "pear"])
        sections = tracker.end(["apple", "pear"], {"apple": epochs_run_now, "pear": epochs_run_now})

    ``clock`` (seconds), ``memory_reader`` and ``gpu_memory_reader`` (bytes) are injectable for tests.
    """

    def __init__(
        self,
        pricing: PricingConfig,
        *,
        clock: Callable[[], float] = time.perf_counter,
        memory_reader: Optional[Callable[[], int]] = None,
        gpu_memory_reader: Optional[Callable[[], int]] = None,
        cpus: Optional[float] = None,
        sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S,
        background: bool = True,
    ):
        if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not cpus > 0):
            raise UserError(f"CPUs to charge must be a positive number, got {cpus!r}")
        self.pricing = pricing
        self.clock = clock
        self.memory_reader = memory_reader
        self.gpu_memory_reader = gpu_memory_reader
        self.cpus = cpus
        self.sample_interval_s = sample_interval_s
        self.background = background
        self._segments: Dict[frozenset, _Segment] = {}

    # -- segments ----------------------------------------------------------------------------------
    def _key(self, fruits: Iterable[str]) -> frozenset:
        return frozenset(fruits)

    def _segment(self, fruits: Iterable[str]) -> _Segment:
        try:
            return self._segments[self._key(fruits)]
        except KeyError:
            raise ValueError(f"no training segment begun for fruits {sorted(fruits)}") from None

    def begin(self, fruits: Sequence[str], previous: Optional[Mapping[str, Optional[dict]]] = None) -> None:
        """Start the clock and memory sampling for ``fruits`` trained together.

        ``previous``: per fruit, the cost section of an earlier (interrupted) run to add to, or None.
        """
        fruits = list(fruits)
        if not fruits or len(set(fruits)) != len(fruits):
            raise ValueError(f"a segment needs distinct fruits, got {fruits}")
        key = self._key(fruits)
        if key in self._segments:
            raise ValueError(f"segment for {sorted(fruits)} already begun")
        if self.gpu_memory_reader is None:
            reset_cuda_peak()
        sampler = MemorySampler(
            self.sample_interval_s, self.memory_reader, self.gpu_memory_reader, background=self.background
        )
        cpus = float(self.cpus) if self.cpus is not None else float(measured_cpus())
        start = self.clock()
        self._segments[key] = _Segment(
            fruits=fruits,
            start=start,
            last_mark=start,
            epoch_seconds=[],
            sampler=sampler,
            cpus=cpus,
            previous={f: (previous or {}).get(f) for f in fruits},
        )
        sampler.start()

    def sample(self) -> None:
        """Record memory now for every running segment (the trainer calls this every few steps)."""
        for segment in self._segments.values():
            segment.sampler.sample()

    def epoch_done(self, fruits: Sequence[str]) -> float:
        """Mark the end of one epoch of the segment; returns that epoch's wall time in seconds (whole group)."""
        segment = self._segment(fruits)
        now = self.clock()
        seconds = now - segment.last_mark
        segment.last_mark = now
        segment.epoch_seconds.append(seconds)
        segment.sampler.sample()
        return seconds

    def end(self, fruits: Sequence[str], epochs_by_fruit: Optional[Mapping[str, int]] = None) -> Dict[str, dict]:
        """Stop the segment and return {fruit: cost_section}, the earlier run's totals added.

        ``epochs_by_fruit``: epochs trained IN THIS SEGMENT per fruit (not counting ``previous``); a fruit
        left out gets the number of ``epoch_done`` calls.
        """
        segment = self._segment(fruits)
        elapsed = max(0.0, self.clock() - segment.start)
        peak = segment.sampler.stop()
        del self._segments[self._key(fruits)]
        share = elapsed / len(segment.fruits)  # fruits trained together split the machine equally
        rates = hourly_rates(self.pricing, segment.cpus, peak / BYTES_PER_GB)
        hours = share / SECONDS_PER_HOUR
        sections = {}
        for fruit in segment.fruits:
            epochs = (epochs_by_fruit or {}).get(fruit, len(segment.epoch_seconds))
            new = make_section(
                share,
                int(epochs),
                peak,
                segment.sampler.peak_gpu_bytes,
                segment.cpus,
                rates["compute"] * hours,
                rates["memory"] * hours,
                rates["total"],
            )
            sections[fruit] = add_sections(segment.previous.get(fruit), new, fruit, self.pricing)
        return sections

    def close(self) -> None:
        """Stop every running segment's sampler without producing sections (e.g. after an error)."""
        for segment in self._segments.values():
            segment.sampler.stop()
        self._segments.clear()

    def __enter__(self) -> "CostTracker":
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()


# ---------------------------------------------------------------------------------------------- output


def format_money(value: float) -> str:
    """Dollars with up to 3 significant digits (at least cents): $0.000123, $0.00021, $0.0000012, $12.35."""
    if value == 0 or not math.isfinite(value):
        return f"${value:.2f}"
    decimals = max(2, MONEY_SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value))))
    text = f"{value:.{decimals}f}"
    whole, frac = text.split(".")
    # Trailing zeros past the cents say nothing: 0.00000120 -> 0.0000012, but 12.30 stays.
    frac = frac[:2] + frac[2:].rstrip("0")
    return f"${whole}.{frac}"


def format_cost_summary(fruit: str, section: Mapping[str, Any]) -> str:
    """The console block shown after a fruit's training."""
    cost = section["cost"]
    lines = [
        SUMMARY_RULE,
        f"TRAINING COST SUMMARY FOR {fruit.upper()}",
        SUMMARY_RULE,
        f"Training time: {section['training_time_hours']:.2f} hours ({section['training_time_minutes']:.1f} minutes)",
        f"Peak memory: {section['peak_memory_gb']:.2f} GB",
        f"Total cost: {format_money(cost['total'])}",
        f"Cost per epoch: {format_money(cost['per_epoch'])}",
        f"Cost per hour: {format_money(cost['per_hour'])}",
        SUMMARY_RULE,
    ]
    return "\n".join(lines)


def folder_size_bytes(folder: os.PathLike) -> int:
    """Total size of the regular files under ``folder`` (links not followed); 0 if it does not exist."""
    total = 0
    for root, _dirs, files in os.walk(folder):
        for name in files:
            try:
                st = os.lstat(os.path.join(root, name))
            except OSError:  # removed while walking
                continue
            if not os.path.islink(os.path.join(root, name)):
                total += st.st_size
    return total


def build_cost_report(
    sections: Mapping[str, Mapping[str, Any]],
    model_dir: os.PathLike,
    config_snapshot: Mapping[str, Any],
    pricing: PricingConfig,
) -> dict:
    """The content of info/cost_analysis_report.json for a whole model.

    Storage is the model folder's size when this is called (the report and description written
    afterwards are a few KB and not counted).
    """
    fruits = list(sections)
    compute = sum(s["cost"]["compute"] for s in sections.values())
    memory = sum(s["cost"]["memory"] for s in sections.values())
    training = compute + memory
    seconds = sum(s["training_time_seconds"] for s in sections.values())
    hours = seconds / SECONDS_PER_HOUR
    epochs = sum(int(s["epochs"]) for s in sections.values())
    peak = max((int(s["peak_memory_bytes"]) for s in sections.values()), default=0)
    peak_gpu = max((int(s.get("peak_gpu_memory_bytes", 0)) for s in sections.values()), default=0)
    size = folder_size_bytes(model_dir)
    size_gb = size / BYTES_PER_GB
    storage = size_gb * pricing.additional_storage_cost_per_gb
    total = training + storage
    return {
        "currency": CURRENCY,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "fruits": fruits,
        "breakdown": {
            "compute": compute,
            "memory": memory,
            "storage": {
                "folder": str(model_dir),
                "size_bytes": size,
                "size_gb": size_gb,
                "cost_per_gb": pricing.additional_storage_cost_per_gb,
                "cost": storage,
                "period": "one month",
            },
            "fixed_monthly_cost": {
                "amount": pricing.fixed_monthly_cost,
                "added": False,
                "why": "the plan subscription the per-CPU and per-GB prices are derived from; adding it would "
                "charge the same CPUs and RAM twice",
            },
        },
        "totals": {
            "compute": compute,
            "memory": memory,
            "training": training,
            "storage": storage,
            "total": total,
        },
        "training_hours": hours,
        "training_time_seconds": seconds,
        "training_time_minutes": seconds / SECONDS_PER_MINUTE,
        "epochs_total": epochs,
        "cost_per_epoch": training / epochs if epochs else 0.0,
        "cost_per_hour": training / hours if hours > 0 else 0.0,
        "cost_per_fruit": total / len(fruits) if fruits else 0.0,
        "average_time_per_fruit_hours": hours / len(fruits) if fruits else 0.0,
        "peak_memory_bytes": peak,
        "peak_memory_gb": peak / BYTES_PER_GB,
        "peak_gpu_memory_bytes": peak_gpu,
        "per_fruit": {fruit: dict(section) for fruit, section in sections.items()},
        "pricing": pricing.to_dict(),
        "pricing_file": pricing.source,
        "hours_per_month": HOURS_PER_MONTH,
        "bytes_per_gb": BYTES_PER_GB,
        "formula": FORMULA_TEXT,
        "model_config": dict(config_snapshot),
    }


_LABELS = {
    "version": "Dataset version",
    "dataset_version": "Dataset version",
    "resolution": "Resolution",
    "fruits": "Fruits",
    "image_counts": "Images per fruit",
    "total_images": "Total images",
    "epochs": "Epochs",
    "batch_size": "Batch size",
    "lr": "Learning rate",
    "learning_rate": "Learning rate",
    "device": "Device",
    "seed": "Seed",
    "precision": "Precision",
}


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


def description_text(
    description: str,
    dataset_info: Mapping[str, Any],
    training_config: Mapping[str, Any],
    sections: Mapping[str, Mapping[str, Any]],
    report: Mapping[str, Any],
) -> str:
    """The text of info/description.txt (model_store writes it): the user's description, the dataset
    (resolution, fruits, image counts), the training configuration, the statistics (time, memory, cost)
    and the formula.

    ``dataset_info`` and ``training_config`` are printed key by key (known keys get friendly labels,
    nested dicts are indented), so the trainer may pass whatever it has.
    """
    n = len(sections) or 1
    totals = report["totals"]
    storage = report["breakdown"]["storage"]
    fixed = report["breakdown"]["fixed_monthly_cost"]["amount"]
    hours = report["training_hours"]
    epochs = report["epochs_total"]
    lines = ["Description", "-----------", description.strip() or "(no description given)"]
    lines += _heading("Dataset") + _render_mapping(dataset_info)
    lines += _heading("Training configuration") + _render_mapping(training_config)
    lines += _heading("Statistics")
    lines += [
        f"Total training time: {hours:.2f} hours ({report['training_time_minutes']:.1f} minutes)",
        f"Average time per fruit: {hours / n:.2f} hours ({report['training_time_minutes'] / n:.1f} minutes)",
        f"Peak memory: {report['peak_memory_gb']:.2f} GB",
        f"Total cost: {format_money(totals['total'])} (compute {format_money(totals['compute'])} + memory "
        f"{format_money(totals['memory'])} + storage {format_money(totals['storage'])})",
        f"Storage: model folder {storage['size_bytes'] / BYTES_PER_MB:.2f} MB ({storage['size_gb']:.6f} GB) "
        "for one month",
        f"Average cost per fruit: {format_money(totals['total'] / n)}",
        f"Average cost per epoch: {format_money(totals['training'] / epochs if epochs else 0.0)} "
        "(compute + memory, per fruit-epoch)",
        f"Fixed monthly cost (plan subscription, reported, not added): {format_money(fixed)}",
        f"Currency: {report.get('currency', CURRENCY)}",
    ]
    lines += _heading("Per fruit")
    for fruit, section in sections.items():
        lines.append(
            f"{fruit}: {section['epochs']} epochs, {section['training_time_hours']:.2f} hours, "
            f"peak {section['peak_memory_gb']:.2f} GB, cost {format_money(section['cost']['total'])}"
        )
    lines += _heading("Cost formula") + FORMULA_TEXT.splitlines()
    return "\n".join(lines) + "\n"


def cost_fields_for_history(section: Mapping[str, Any]) -> dict:
    """Fields merged into training_history_<fruit>.json. ``cost`` is the full section: pass it back as
    ``previous`` when the run is resumed."""
    cost = section["cost"]
    return {
        "cost_summary": {
            "total": cost["total"],
            "per_epoch": cost["per_epoch"],
            "per_hour": cost["per_hour"],
            "compute": cost["compute"],
            "memory": cost["memory"],
            "currency": section.get("currency", CURRENCY),
        },
        "training_time_seconds": section["training_time_seconds"],
        "training_time_hours": section["training_time_hours"],
        "training_time_minutes": section["training_time_minutes"],
        "peak_memory_gb": section["peak_memory_gb"],
        "cost": json.loads(json.dumps(section)),  # a deep, JSON-clean copy
    }


# ------------------------------------------------------------------------------------------------ CLI


@dataclass
class EstimateConfig:
    """Options of ``python cost_analysis_training.py``: estimate a training's cost before running it."""

    pricing_path: Path  # the pricing file to check and use
    cpus: float  # CPUs charged
    ram_gb: float  # peak RAM charged, GB
    hours: float  # training hours
    epochs: int  # epochs, for the cost per epoch (0: not shown)


def parse_args(argv: Optional[Sequence[str]]) -> EstimateConfig:
    parser = argparse.ArgumentParser(
        description="Check the pricing file and estimate a training's cost. " + FORMULA_TEXT.splitlines()[1]
    )
    parser.add_argument("--pricing", type=Path, default=DEFAULT_PRICING_PATH, help="pricing JSON file")
    parser.add_argument("--cpus", type=float, default=None, help="CPUs charged (default: measured)")
    parser.add_argument("--ram-gb", type=float, default=2.0, help="peak RAM in GB (default 2)")
    parser.add_argument("--hours", type=float, default=1.0, help="training hours (default 1)")
    parser.add_argument("--epochs", type=int, default=0, help="epochs, for the cost per epoch")
    args = parser.parse_args(argv)
    for name in ("cpus", "ram_gb", "hours", "epochs"):
        value = getattr(args, name)
        if value is not None and (not math.isfinite(value) or value < 0):
            raise UserError(f"--{name.replace('_', '-')} must be a non-negative number, got {value}")
    cpus = args.cpus if args.cpus is not None else float(measured_cpus())
    return EstimateConfig(args.pricing, cpus, args.ram_gb, args.hours, args.epochs)


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = parse_args(argv)
    pricing = load_pricing(cfg.pricing_path)
    rates = hourly_rates(pricing, cfg.cpus, cfg.ram_gb)
    total = rates["total"] * cfg.hours
    print(f"Pricing file {pricing.source}: OK")
    print(f"{cfg.cpus:g} CPUs, {cfg.ram_gb:g} GB RAM: {format_money(rates['total'])} per hour "
          f"(compute {format_money(rates['compute'])}, memory {format_money(rates['memory'])})")
    print(f"{cfg.hours:g} hours: {format_money(total)}")
    if cfg.epochs:
        print(f"per epoch ({cfg.epochs} epochs): {format_money(total / cfg.epochs)}")
    print(f"Fixed monthly cost {format_money(pricing.fixed_monthly_cost)}: reported, not added")
    return 0


if __name__ == "__main__":
    sys.exit(run_main(main))

"""What training a model cost: time, peak memory and dollars, per fruit and per model.

Prices come from ``render_pricing_config.json`` (user-editable, USD); the formula is FORMULA_TEXT
(fruitgan/learn/cost_report.py), also written into every model's description.txt, with
HOURS_PER_MONTH = 720 (the course's convention, not 730); GB are 2**30 bytes (plans are sized in binary
gigabytes). RAM charged is the peak RSS, sampled every 0.5 s by fruitgan/learn/memory.py. ``fixed_monthly_cost``
is the subscription the unit prices were derived from (19/64 per CPU, 19/512 per GB): reported, NOT added."""
from __future__ import annotations

if __name__ == "__main__":   # first of all: Ctrl+C while the imports below load exits 130 too
    from fruitgan.util.user_io import interrupt_exits_130
    interrupt_exits_130()

import argparse
import math
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Dict, List, Mapping, Optional, Sequence

from fruitgan.learn.cost_report import FORMULA_TEXT, SECONDS_PER_HOUR, SECONDS_PER_MINUTE
from fruitgan.learn.memory import BYTES_PER_GB, DEFAULT_SAMPLE_INTERVAL_S, MemorySampler, measured_cpus, reset_cuda_peak
from fruitgan.learn.pricing import (CURRENCY, DEFAULT_PRICING_PATH, PricingConfig, format_money, hourly_rates,
                                    load_pricing)
from fruitgan.util.user_io import ArgumentParser, UserError, run_main


# ---------------------------------------------------------------------------------------------- tracking
@dataclass
class _Segment:
    """One group of fruits trained together, from begin() to end()."""

    fruits: List[str]
    start: float  # clock() at begin
    sampler: MemorySampler
    cpus: float
    previous: Dict[str, Optional[dict]]


def _number(section: Mapping[str, Any], key: str, fruit: str, default: Optional[float] = None) -> float:
    """A non-negative number from an earlier cost section (read back from JSON), or a UserError."""
    value = section.get(key, default)
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value) or value < 0:
        raise UserError(f"earlier cost record for {fruit} has an invalid {key!r} ({value!r}); "
                        "fix or delete the 'cost' entry of its training history")
    return float(value)


def make_section(seconds: float, epochs: int, peak_bytes: int, peak_gpu_bytes: int, cpus: float, compute: float,
                 memory: float, rate_per_hour: float, segments: int = 1) -> dict:
    """A cost section from raw totals (derived fields computed here, one place)."""
    hours, total = seconds / SECONDS_PER_HOUR, compute + memory
    return {"training_time_seconds": seconds, "training_time_hours": hours,
            "training_time_minutes": seconds / SECONDS_PER_MINUTE, "epochs": int(epochs),
            "time_per_epoch_seconds": seconds / epochs if epochs else 0.0, "peak_memory_bytes": int(peak_bytes),
            "peak_memory_gb": peak_bytes / BYTES_PER_GB, "peak_gpu_memory_bytes": int(peak_gpu_bytes),
            "cpus_charged": cpus, "ram_gb_charged": peak_bytes / BYTES_PER_GB,
            # With no time measured, the rate itself is the honest "per hour".
            "cost": {"compute": compute, "memory": memory, "total": total,
                     "per_epoch": total / epochs if epochs else 0.0,
                     "per_hour": total / hours if hours > 0 else rate_per_hour},
            "currency": CURRENCY, "segments": int(segments)}


def add_sections(previous: Optional[Mapping[str, Any]], new: Mapping[str, Any], fruit: str = "?",
                 pricing: Optional["PricingConfig"] = None) -> dict:
    """An earlier section plus a new one (the next epoch, or a resume): times, epochs and compute add, peaks
    max; memory is the RAM price x the larger peak x all the hours, as the formula says (without ``pricing``
    the memory costs add). ``cpus_charged`` is the latest section's."""
    if not previous:
        return dict(new)
    prev_cost = previous.get("cost")
    if not isinstance(prev_cost, Mapping):
        raise UserError(f"earlier cost record for {fruit} has no 'cost' breakdown; fix or delete the 'cost' entry "
                        "of its training history")
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
    return make_section(seconds, epochs, peak, gpu, new["cpus_charged"], compute, memory, new["cost"]["per_hour"],
                        segments)


class CostTracker:
    """Measures training segments (time, peak memory; begin() and end() around each group of fruits trained
    together) and turns them into per-fruit cost sections. ``clock`` (seconds), ``memory_reader`` and
    ``gpu_memory_reader`` (bytes) are injectable for tests."""

    def __init__(self, pricing: PricingConfig, *, clock: Callable[[], float] = time.perf_counter,
                 memory_reader: Optional[Callable[[], int]] = None,
                 gpu_memory_reader: Optional[Callable[[], int]] = None, cpus: Optional[float] = None,
                 sample_interval_s: float = DEFAULT_SAMPLE_INTERVAL_S, background: bool = True):
        if cpus is not None and (isinstance(cpus, bool) or not isinstance(cpus, (int, float)) or not cpus > 0):
            raise UserError(f"CPUs to charge must be a positive number, got {cpus!r}")
        self.pricing, self.clock, self.cpus = pricing, clock, cpus
        self.memory_reader, self.gpu_memory_reader = memory_reader, gpu_memory_reader
        self.sample_interval_s, self.background = sample_interval_s, background
        self._segments: Dict[frozenset, _Segment] = {}

    def begin(self, fruits: Sequence[str], previous: Optional[Mapping[str, Optional[dict]]] = None) -> None:
        """Start the clock and memory sampling for ``fruits`` trained together. ``previous``: per fruit, the cost
        section of an earlier (interrupted) run to add to, or None."""
        fruits = list(fruits)
        if not fruits or len(set(fruits)) != len(fruits):
            raise ValueError(f"a segment needs distinct fruits, got {fruits}")
        key = frozenset(fruits)
        if key in self._segments:
            raise ValueError(f"segment for {sorted(fruits)} already begun")
        if self.gpu_memory_reader is None:
            reset_cuda_peak()
        sampler = MemorySampler(self.sample_interval_s, self.memory_reader, self.gpu_memory_reader, self.background)
        cpus = float(self.cpus) if self.cpus is not None else float(measured_cpus())
        previous = {f: (previous or {}).get(f) for f in fruits}
        self._segments[key] = _Segment(fruits, self.clock(), sampler, cpus, previous)
        sampler.start()

    def end(self, fruits: Sequence[str], epochs_by_fruit: Mapping[str, int]) -> Dict[str, dict]:
        """Stop the segment: {fruit: cost_section}, the earlier run's totals added. ``epochs_by_fruit``: epochs
        trained IN THIS SEGMENT per fruit (not counting ``previous``)."""
        segment = self._segments.pop(frozenset(fruits), None)
        if segment is None:
            raise ValueError(f"no training segment begun for fruits {sorted(fruits)}")
        elapsed = max(0.0, self.clock() - segment.start)
        peak = segment.sampler.stop()
        share = elapsed / len(segment.fruits)  # fruits trained together split the machine equally
        rates = hourly_rates(self.pricing, segment.cpus, peak / BYTES_PER_GB)
        hours = share / SECONDS_PER_HOUR
        sections = {}
        for fruit in segment.fruits:
            new = make_section(share, int(epochs_by_fruit[fruit]), peak, segment.sampler.peak_gpu_bytes, segment.cpus,
                               rates["compute"] * hours, rates["memory"] * hours, rates["total"])
            sections[fruit] = add_sections(segment.previous.get(fruit), new, fruit, self.pricing)
        return sections

    def close(self) -> None:
        """Stop every running segment's sampler without producing sections (e.g. after an error)."""
        for segment in self._segments.values():
            segment.sampler.stop()
        self._segments.clear()


# ------------------------------------------------------------------------------------------------ CLI
def parse_args(argv: Optional[Sequence[str]]) -> argparse.Namespace:
    """Options of ``python cost_analysis_training.py``: estimate a training's cost before running it."""
    parser = ArgumentParser(
        description="Check the pricing file and estimate a training's cost. " + FORMULA_TEXT.splitlines()[1])
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
    if args.cpus is None:
        args.cpus = float(measured_cpus())
    return args


def main(argv: Optional[Sequence[str]] = None) -> int:
    cfg = parse_args(argv)
    pricing = load_pricing(cfg.pricing)
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

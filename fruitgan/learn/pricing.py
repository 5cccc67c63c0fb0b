"""The prices a training is charged at: render_pricing_config.json (user-editable, USD), read and checked
here, and the hourly rates of a machine of so many CPUs and GB of RAM (the formula: cost_analysis_training.py)."""
from __future__ import annotations

import json
import math
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from fruitgan.util.user_io import UserError

HOURS_PER_MONTH = 720.0  # 30 days x 24 h: the course's convention for a "month" of a monthly price
CURRENCY = "USD"
MONEY_SIGNIFICANT_DIGITS = 3  # costs are tiny fractions of a dollar: show significant digits, not cents
DEFAULT_PRICING_PATH = Path(__file__).resolve().parents[2] / "render_pricing_config.json"
PRICING_KEYS = ("fixed_monthly_cost", "cost_per_cpu_per_month", "cost_per_gb_ram_per_month",
                "additional_storage_cost_per_gb")


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
        return {**{key: getattr(self, key) for key in PRICING_KEYS}, **self.extra}


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
        raise UserError(f"pricing file {path} not found; create it with the keys {', '.join(PRICING_KEYS)}") from None
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


def format_money(value: float) -> str:
    """Dollars with up to 3 significant digits (at least cents): $0.000123, $0.00021, $0.0000012, $12.35."""
    if value == 0 or not math.isfinite(value):
        return f"${value:.2f}"
    decimals = max(2, MONEY_SIGNIFICANT_DIGITS - 1 - math.floor(math.log10(abs(value))))
    whole, frac = f"{value:.{decimals}f}".split(".")
    # Trailing zeros past the cents say nothing: 0.00000120 -> 0.0000012, but 12.30 stays.
    frac = frac[:2] + frac[2:].rstrip("0")
    return f"${whole}.{frac}"

"""One number per evaluation that picks each fruit's best checkpoint (quality_score), and the console table of
the figures (format_metrics_table)."""
from __future__ import annotations

import math
from typing import Mapping, Optional, Sequence

SCORE_FID_WEIGHT = 0.25
HEALTHY_MEMORISATION = 0.95       # memorisation ratio below this costs score (the target: >= 0.95)
SCORE_MEMORISATION_WEIGHT = 1.0   # per unit below it: a copying generator (ratio 0) never wins on a ~0.5 accuracy


def _number(metrics: Mapping, key: str) -> Optional[float]:
    """metrics[key] as a float; None when absent or None (not measured); NaN stays NaN."""
    value = metrics.get(key)
    if value is None:
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return math.nan


def quality_score(metrics: Mapping) -> float:
    """One number per evaluation, higher is better: how the trainer picks each fruit's "best" checkpoint.

    With the two-sample test measured: (1 - two_sample_accuracy) - 1.0 * max(0, 0.95 - memorisation_ratio)
    (a copying generator also fools the test). Otherwise: recognizability + coverage - 0.25 * ln(1 + fid)
    (coverage sees mode collapse; the log keeps FID from swamping the rest). Missing or NaN: -inf. The two
    are not on one scale, but one training run always uses the same one (its held-out split is fixed).
    """
    accuracy = _number(metrics, "two_sample_accuracy")
    if accuracy is not None:
        if math.isnan(accuracy):
            return -math.inf
        ratio = _number(metrics, "memorisation_ratio")
        copying = 0.0 if ratio is None or math.isnan(ratio) else max(0.0, HEALTHY_MEMORISATION - ratio)
        return (1.0 - accuracy) - SCORE_MEMORISATION_WEIGHT * copying
    cover, fid = _number(metrics, "coverage"), _number(metrics, "fid")
    recog = _number(metrics, "recognizability")
    if recog is None and "recognizability_note" not in metrics:
        return -math.inf
    figures = [v for v in (recog, cover, fid) if v is not None]
    if cover is None or fid is None or any(math.isnan(v) for v in figures) or fid < 0:
        return -math.inf
    return (recog or 0.0) + cover - SCORE_FID_WEIGHT * math.log1p(fid)


# Columns of format_metrics_table: (key, header, format)
TABLE_COLUMNS = (
    ("two_sample_accuracy", "2-sample", "{:.2f}"), ("two_sample_half_width", "+-", "{:.2f}"),
    ("memorisation_ratio", "memo.", "{:.2f}"), ("recognizability", "recognised", "{:.0%}"),
    ("confidence", "conf.", "{:.2f}"), ("fid", "FID", "{:.2f}"), ("precision", "prec.", "{:.2f}"),
    ("recall", "recall", "{:.2f}"), ("density", "density", "{:.2f}"), ("coverage", "cover.", "{:.2f}"),
    ("score", "score", "{:.3f}"),
)


def _cell(value, fmt: str) -> str:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return "-"
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return fmt.format(value)
    return str(value)


def format_metrics_table(rows: Sequence[Mapping]) -> str:
    """A plain-text table of metric dicts, one per row: label columns (keys that are not metrics, first-seen
    order), then the TABLE_COLUMNS present in any row; missing values show "-"."""
    known = {k for k, _, _ in TABLE_COLUMNS}
    # Details of the figures (counts, medians, notes) are not row labels.
    skip = {"num_generated", "num_real", "k", "half_size", "two_sample_n", "two_sample_real", "two_sample_low",
            "two_sample_high", "two_sample_decided", "memorisation_generated_median", "memorisation_heldout_median",
            "memorisation_n_heldout"}
    labels: list = []
    for row in rows:
        for key, value in row.items():
            if (key not in known and key not in skip and not key.endswith("_note") and key not in labels
                    and not isinstance(value, (dict, list))):
                labels.append(key)
    metrics = [(k, h, f) for k, h, f in TABLE_COLUMNS if any(k in row for row in rows)]
    header = labels + [h for _, h, _ in metrics]
    body = [[_cell(row.get(k), "{}" if not isinstance(row.get(k), float) else "{:.3g}") for k in labels]
            + [_cell(row.get(k), f) for k, _, f in metrics] for row in rows]
    widths = [max(len(str(c)) for c in col) for col in zip(header, *body)] if header else []
    lines = ["  ".join(str(c).ljust(w) if i < len(labels) else str(c).rjust(w)
                       for i, (c, w) in enumerate(zip(line, widths))).rstrip() for line in [header, *body]]
    return "\n".join(lines)

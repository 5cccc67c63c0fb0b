"""Training-history plots, info/training_history_<fruit>.png and training_history_all.png, redrawn at every
milestone. Plain Figures on an Agg canvas (no pyplot): the caller's backend stays, no figure is kept alive."""
from __future__ import annotations

import math
from pathlib import Path
from typing import Dict, List, Optional, Sequence

from fruitgan.data.heldout_split import validation_key
from fruitgan.util.safe_files import FRUITS, atomic_save_figure

DPI = 80                       # small PNGs that still read well; redrawn often, so cheap matters
PANEL_SIZE = (4.6, 3.2)        # inches per panel
# Figure margins in inches (top: figure title and a two-line panel title), gaps as a share of a panel.
MARGINS = {"left": 0.7, "right": 0.2, "top": 0.8, "bottom": 0.55, "wspace": 0.28, "hspace": 0.45}
LEGEND_HEIGHT = 0.35           # inches below the panels for the all-fruits legend
MAX_NAMED_MISSING = 3          # beyond this many fruits without a value, name those with one instead
FIGURE_ROWS = 2                # panels fill two rows, so 4-8 panels stay a wide, readable landscape figure
SMOOTH_EPOCHS = 10             # all-fruits figure: per-epoch series are averaged, 7 raw noisy lines are a blur
LOG_SCALE_METRICS = ("fid",)   # FID falls from hundreds to single digits: log scale keeps the late epochs readable
BLANK = "blank"                # gid of a panel with nothing plotted
NO_VALUE_NOTE = "no value recorded\n(e.g. too few real drawings)"

# Per-epoch series: (key, label). The per-fruit figure pairs them in two panels.
LOSS_SERIES = (("d_loss", "D loss"), ("g_loss", "G loss"))
D_SERIES = (("d_real", "D(x), real"), ("d_fake", "D(G(z)), generated"))
# Quality metrics: key -> (panel title, y label, reference value and its label, or None); runs from before the
# validation/test split recorded the held-out figures without the val_ prefix.
QUALITY_METRICS = {
    validation_key("two_sample_accuracy"): ("Two-sample accuracy (validation part)", "accuracy",
                                (0.5, "0.5 = indistinguishable")),
    "two_sample_accuracy": ("Two-sample accuracy", "accuracy", (0.5, "0.5 = indistinguishable")),
    validation_key("memorisation_ratio"): ("Memorisation ratio (validation part)", "ratio", (1.0, "reference 1")),
    "memorisation_ratio": ("Memorisation ratio", "ratio", (1.0, "reference 1")),
    "recognizability": ("Recognisability", "share recognised", None),
    "fid": ("FID (lower is better)", "FID", None),
}


def _number(value) -> Optional[float]:
    """A finite float, or None for missing, None, text or hand-edited junk (plotted as a gap, never as 0)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not math.isfinite(value):
        return None
    return float(value)


def _series(records: list, key: str):
    pairs = [(_number(r.get("epoch")), _number(r.get(key))) for r in records if isinstance(r, dict)]
    pairs = [(e, v) for e, v in pairs if e is not None and v is not None]
    return [e for e, _ in pairs], [v for _, v in pairs]


def _quality_keys(histories: Sequence[dict]) -> List[str]:
    """The known quality metrics any evaluation recorded (older runs lack the newer ones)."""
    seen = {k for h in histories for q in h.get("quality") or [] if isinstance(q, dict) for k in q}
    return [k for k in QUALITY_METRICS if k in seen]


def _smoothed(xs: list, ys: list, window: int):
    """Trailing moving average over ``window`` points (the series as is when it is shorter)."""
    import numpy as np

    if len(ys) < window:
        return xs, ys
    return xs[window - 1:], np.convolve(ys, np.full(window, 1 / window), mode="valid")


def _new_figure(panels: int, legend: bool = False):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    rows = min(FIGURE_ROWS, panels)
    columns = math.ceil(panels / rows)
    bottom = MARGINS["bottom"] + (LEGEND_HEIGHT if legend else 0)
    width, height = PANEL_SIZE[0] * columns, PANEL_SIZE[1] * rows + MARGINS["top"] + bottom
    fig = Figure(figsize=(width, height), dpi=DPI)
    FigureCanvasAgg(fig)      # Agg for this figure only; the global backend stays the caller's
    # Fixed margins: constrained layout would double the time of a redraw.
    fig.subplots_adjust(left=MARGINS["left"] / width, right=1 - MARGINS["right"] / width,
                        top=1 - MARGINS["top"] / height, bottom=bottom / height,
                        wspace=MARGINS["wspace"], hspace=MARGINS["hspace"])
    axes = fig.subplots(rows, columns, squeeze=False).ravel()
    for ax in axes[panels:]:
        ax.set_visible(False)
    return fig, list(axes[:panels])


def _blank(ax, text: str) -> None:
    """A panel with nothing to plot says why, with no axes ticks or legend that would suggest values."""
    ax.text(0.5, 0.5, text, transform=ax.transAxes, ha="center", va="center", color="grey")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_gid(BLANK)


def _finish(axes, best: Optional[float] = None) -> None:
    """Best-epoch line and legend on every panel that has data."""
    for ax in axes:
        if ax.get_gid() == BLANK:
            continue
        if best is not None:
            ax.axvline(best, color="grey", linestyle=":", linewidth=1.5, label=f"best epoch {best:.0f}")
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize="small")


def _style(ax, title: str, ylabel: str, reference=None) -> None:
    if reference is not None:
        ax.axhline(reference[0], color="black", linestyle="--", linewidth=1, label=reference[1])
    ax.set_title(title)
    ax.set_xlabel("epoch")
    ax.set_ylabel(ylabel)
    ax.grid(alpha=0.3)


def _scale(ax, key: str, has_values: bool) -> None:
    if key in LOG_SCALE_METRICS and has_values:
        ax.set_yscale("log")
        ax.set_ylabel(f"{ax.get_ylabel()} (log scale)")
    elif key == "recognizability":
        ax.set_ylim(-0.05, 1.05)


def _metric_reference(history: dict, key: str):
    if key == "fid":   # FID between two halves of the real drawings: the best a generator can expect
        real = _number((history.get("reference_quality") or {}).get("fid_real_halves"))
        return (real, f"real vs real {real:.1f}") if real is not None else None
    return QUALITY_METRICS[key][2]


def _fruit_title(history: dict, fruit: str) -> str:
    epochs = history.get("epochs") or []
    parts = [f"{fruit}: training history", f"model {history.get('model_name', '?')}",
             f"dataset {history.get('dataset_version', '?')}", f"{len(epochs)} epochs"]
    if history.get("num_images") is not None:
        parts.append(f"{history['num_images']} images ({history.get('num_real_images', '?')} real)")
    if history.get("num_heldout_real_images"):      # say what it trained on: the rest was held out
        parts[-1] = (f"trained on {history.get('num_train_images', '?')} images, "
                     f"{history['num_heldout_real_images']} real held out")
    return ", ".join(parts)


def plot_fruit_history(history: dict, path: Path) -> Path:
    """Draw one fruit's losses, D outputs and quality figures over the epochs into the PNG ``path``."""
    fruit = str(history.get("fruit") or Path(path).stem.replace("training_history_", ""))
    return atomic_save_figure(fruit_figure(history, fruit), Path(path), dpi=DPI)


def fruit_figure(history: dict, fruit: str):
    """The per-fruit Figure (kept apart from saving so tests can read its panels)."""
    epochs, quality = history.get("epochs") or [], history.get("quality") or []
    metrics = _quality_keys([history])
    fig, axes = _new_figure(2 + max(len(metrics), 1))
    for ax, (title, ylabel, series) in zip(axes, (("Losses", "loss", LOSS_SERIES),
                                                  ("Discriminator outputs", "mean D output", D_SERIES))):
        for key, label in series:
            ax.plot(*_series(epochs, key), linewidth=1, label=label)
        _style(ax, title, ylabel)
        if not epochs:
            _blank(ax, "no epochs finished yet")
    for ax, key in zip(axes[2:], metrics):
        title, ylabel, _ = QUALITY_METRICS[key]
        xs, ys = _series(quality, key)
        evaluated = len(_series(quality, "epoch")[0])
        if ys and len(ys) < evaluated:
            title = f"{title}\n(no value at {evaluated - len(ys)} of {evaluated} evaluations)"
        ax.plot(xs, ys, marker="o", markersize=3, linewidth=1, label=ylabel)
        _style(ax, title if ys else f"{title}: no value", ylabel, _metric_reference(history, key) if ys else None)
        _scale(ax, key, bool(ys))
        if not ys:
            _blank(ax, NO_VALUE_NOTE)
    if not metrics:
        _style(axes[2], "Quality", "")
        _blank(axes[2], "no quality evaluation yet")
    _finish(axes, _number(history.get("best_epoch")))
    fig.suptitle(_fruit_title(history, fruit))
    return fig


def plot_all_fruits(histories: Dict[str, dict], path: Path) -> Path:
    """Draw every fruit in one figure: one panel per quantity, one line per fruit (best epochs starred)."""
    return atomic_save_figure(all_fruits_figure(histories), Path(path), dpi=DPI)


def _missing_title(title: str, missing: List[str], fruits: List[str]) -> str:
    if not missing:
        return title
    if len(missing) <= MAX_NAMED_MISSING:
        return f"{title}\n(no value: {', '.join(missing)})"
    return f"{title}\n(values only for {', '.join(f for f in fruits if f not in missing)})"


def all_fruits_figure(histories: Dict[str, dict]):
    fruits = [f for f in FRUITS if f in histories] + sorted(f for f in histories if f not in FRUITS)
    metrics = _quality_keys(list(histories.values()))
    fig, axes = _new_figure(len(LOSS_SERIES) + len(D_SERIES) + max(len(metrics), 1), legend=True)
    colours = {f: f"C{i}" for i, f in enumerate(fruits)}
    for ax, (key, label) in zip(axes, LOSS_SERIES + D_SERIES):
        for f in fruits:
            xs, ys = _smoothed(*_series(histories[f].get("epochs") or [], key), SMOOTH_EPOCHS)
            ax.plot(xs, ys, color=colours[f], linewidth=1.2, label=f)
        _style(ax, f"{label} ({SMOOTH_EPOCHS}-epoch average)", label.split(",")[0])
        if not any(h.get("epochs") for h in histories.values()):
            _blank(ax, "no epochs finished yet")
    for ax, key in zip(axes[len(LOSS_SERIES) + len(D_SERIES):], metrics):
        title, ylabel, reference = QUALITY_METRICS[key]
        missing = []
        for f in fruits:
            xs, ys = _series(histories[f].get("quality") or [], key)
            if not ys:
                missing.append(f)
            ax.plot(xs, ys, color=colours[f], marker="o", markersize=2.5, linewidth=1, label=f)
            best = _number(histories[f].get("best_epoch"))
            if best in xs:
                ax.plot(best, ys[xs.index(best)], color=colours[f], marker="*", markersize=11)
        if len(missing) == len(fruits):
            _style(ax, f"{title}: no value", ylabel)
            _blank(ax, NO_VALUE_NOTE)
            continue
        _style(ax, _missing_title(title, missing, fruits), ylabel, reference)
        _scale(ax, key, True)
    if not metrics:
        _style(axes[-1], "Quality", "")
        _blank(axes[-1], "no quality evaluation yet")
    fig.legend(*axes[0].get_legend_handles_labels(), loc="lower center", frameon=False, ncol=max(len(fruits), 1))
    plural = "" if len(fruits) == 1 else "s"
    fig.suptitle(f"All fruits: training history ({len(fruits)} fruit{plural}; * = best epoch)")
    return fig

"""The report's tables, as Markdown computed from a run's records: data, cost, quality, held-out figures."""
from __future__ import annotations

from typing import List, Optional, Sequence

from fruitgan.data.heldout_split import VALIDATION_PREFIX
from fruitgan.report.runs import Run, fmt, number, span


def markdown_table(header: Sequence[str], rows: List[Sequence]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    return "\n".join(lines + ["| " + " | ".join(str(c) for c in row) + " |" for row in rows])


def interval(q: dict, prefix: str = "") -> Optional[str]:
    """'0.68 [0.63, 0.72]': a two-sample accuracy with its 95% interval, or None when not measured."""
    acc, lo, hi = (q.get(prefix + k) for k in ("two_sample_accuracy", "two_sample_low", "two_sample_high"))
    if not number(acc):
        return None
    return f"{acc:.2f} [{lo:.2f}, {hi:.2f}]" if number(lo) and number(hi) else f"{acc:.2f}"


def data_table(run: Run) -> str:
    """Per fruit: real drawings, augmented copies, what the GAN trained on, and the held-out parts."""
    real, images = run.dataset("real_images"), run.dataset("images")
    rows = []
    for f, h in run.histories.items():
        aug = images[f] - real[f] if number(real.get(f)) and number(images.get(f)) else None
        share = aug / images[f] if number(aug) and images[f] else None
        rows.append((f, fmt(real.get(f), "d"), f"{fmt(aug, 'd')} ({fmt(share, '.0%')})",
                     fmt(h.get("num_train_images", images.get(f)), "d"), fmt(h.get("num_validation_images"), "d"),
                     fmt(h.get("num_test_images"), "d")))
    return markdown_table(("fruit", "real drawings", "augmented copies (share)", "trained on", "validation part",
                           "test part"), rows)


def cost_table(run: Run) -> str:
    """Each fruit's training time and cost, then the whole run's totals."""
    usd = lambda money, *keys: ["$" + fmt(money.get(k), ".6f") for k in keys]
    rows = []
    for f, h in run.histories.items():
        c = h.get("cost") or {}
        rows.append((f, fmt(c.get("training_time_minutes"), ".1f"), fmt(c.get("time_per_epoch_seconds"), ".2f"),
                     fmt(c.get("peak_memory_gb"), ".2f"), *usd(c.get("cost") or {}, "compute", "memory", "total")))
    report = run.folder.read_cost_report() or {}
    totals = report.get("totals") or {}
    rows.append(("**whole run**", fmt(report.get("training_time_minutes"), ".1f"), "",
                 fmt(report.get("peak_memory_gb"), ".2f"), *usd(totals, "compute", "memory", "training")))
    storage = ((report.get("breakdown") or {}).get("storage") or {})
    shared = ("The fruits were stepped together: each fruit's row is an equal share of the run's time. "
              if run.config.get("schedule") == "together" and len(run.fruits) > 1 else "")
    return (markdown_table(("fruit", "minutes", "s/epoch", "peak GiB", "compute", "memory", "compute + memory"), rows)
            + f"\n\n{shared}Storage, once for the whole folder "
            f"({fmt(storage.get('size_gb'), '.2f')} GiB for one month): "
            f"${fmt(totals.get('storage'), '.4f')}. Total: ${fmt(totals.get('total'), '.4f')}.")


def quality_rows(run: Run) -> List[dict]:
    """Per fruit: the last milestone's figures, the best checkpoint's, and real drawings against real ones."""
    rows = []
    for f, h in run.histories.items():
        quality = h.get("quality") or [{}]
        last, ref = quality[-1], h.get("reference_quality") or {}
        best = next((q for q in quality if q.get("epoch") == h.get("best_epoch")), {})
        real_recog = ref.get("heldout_recognizability")
        rows.append(dict(fruit=f, real=h.get("num_real_images"), epoch=last.get("epoch"), milestones=len(quality),
                         recog=last.get("recognizability"), fid=last.get("fid"), coverage=last.get("coverage"),
                         best_epoch=h.get("best_epoch"), best_recog=best.get("recognizability"),
                         first=quality[0], real_fid=ref.get("fid_real_halves"), half=ref.get("half_size"),
                         real_recog=real_recog if number(real_recog) else ref.get("recognizer_heldout_accuracy"),
                         real_recog_n=None if number(real_recog) else ref.get("recognizer_heldout_count")))
    return rows


def quality_table(run: Run) -> str:
    rows = [(r["fruit"], fmt(r["real"], "d"), fmt(r["epoch"], "d"), fmt(r["recog"], ".0%"), fmt(r["fid"], ".2f"),
             fmt(r["real_fid"], ".2f"), fmt(r["coverage"], ".2f"), fmt(r["best_epoch"], "d"))
            for r in quality_rows(run)]
    return markdown_table(("fruit", "real drawings", "last epoch", "recognised", "FID to training drawings",
                           "FID real vs real", "coverage", "best checkpoint"), rows)


def heldout_rows(run: Run) -> List[dict]:
    """Per fruit: its held-out figure from the test part (``test``), or why there is none (``note``)."""
    rows = []
    for f, h in run.histories.items():
        test = h.get("test_quality") or {}
        validation = [q for q in h.get("quality") or [] if number(q.get(VALIDATION_PREFIX + "two_sample_accuracy"))]
        note = test.get("two_sample_note") or h.get("split_note")
        if not test and validation:
            note = "the test part is measured once, when the run ends: this run has not ended"
        rows.append(dict(fruit=f, test=test, text=interval(test), validation=validation, note=note,
                         n=test.get("two_sample_real"), memo=test.get("memorisation_ratio")))
    return rows


def heldout_table(run: Run) -> str:
    """The validation part at each milestone (it picks the best checkpoint) and the test part, measured once."""
    out = []
    for r in heldout_rows(run):
        if not r["validation"]:
            out.append(f"**{r['fruit']}**: not measured: {r['note'] or 'no held-out drawings'}.")
            continue
        memo = VALIDATION_PREFIX + "memorisation_ratio"
        rows = [(q["epoch"], interval(q, VALIDATION_PREFIX), fmt(q.get(memo), ".2f"),
                 "best checkpoint" if q["epoch"] == r["test"].get("epoch") else "") for q in r["validation"]]
        if r["text"]:
            rows.append((f"**test, epoch {r['test'].get('epoch')}**", f"**{r['text']}** on {r['n']} drawings",
                         fmt(r["memo"], ".2f"), "reported"))
        out.append(f"**{r['fruit']}**\n\n" + markdown_table(("epoch", "two-sample accuracy [95%]", "memorisation",
                                                               ""), rows))
    return "\n\n".join(out)


def recogniser_reference(run: Run) -> str:
    """How often the recogniser names real drawings it never trained on (the yardstick of 'recognised')."""
    rows = quality_rows(run)
    per_fruit = [r["real_recog"] for r in rows if number(r["real_recog"]) and r["real_recog_n"] is None]
    if per_fruit:
        return f"{span(per_fruit, '.0%')} (per fruit, on its held-out drawings)"
    pooled = next(((r["real_recog"], r["real_recog_n"]) for r in rows if number(r["real_recog"]) and r["real_recog_n"]),
                  None)
    if pooled is None:
        return "not measured"
    acc, n = pooled
    se = (acc * (1 - acc) / n) ** 0.5
    return f"{acc:.0%} (standard error {se:.0%}, {n} drawings pooled over the fruits)"


def layer_table(model, example) -> str:
    """Each layer's output shape and parameter count for ``example`` (a Keras-style model summary)."""
    import torch

    rows, hooks = [], []
    for name, module in model.named_modules():
        if not list(module.children()):
            hooks.append(module.register_forward_hook(lambda m, i, o, name=name: rows.append(
                (name, type(m).__name__, tuple(o.shape), f"{sum(p.numel() for p in m.parameters()):,}"))))
    model.eval()
    with torch.no_grad():
        model(example)
    for h in hooks:
        h.remove()
    total = sum(p.numel() for p in model.parameters())
    return markdown_table(("layer", "type", "output shape", "parameters"), rows + [("**total**", "", "", f"{total:,}")])


def optimizer_text(optimizer) -> str:
    d = optimizer.defaults
    return f"{type(optimizer).__name__}, learning rate {d['lr']}, betas {d['betas']}"


def model_summary(gan) -> str:
    """The GAN's parts and sizes, as trained for each fruit."""
    g, d = (sum(p.numel() for p in net.parameters()) for net in (gan.generator, gan.discriminator))
    cfg = gan.config
    return (f"**The model**, one per fruit: a generator of {g:,} parameters and a discriminator of {d:,}, "
            f"{g + d:,} in all, plus the moving-average copy of the generator (decay {cfg.ema_decay}). Both use "
            f"{optimizer_text(gan.g_optimizer)} and BCE on the logit; DiffAugment: `{cfg.diff_augment}`.")

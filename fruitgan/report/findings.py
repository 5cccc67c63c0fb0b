"""Section c) of the report: verdicts (from the held-out test part, else "not measured", why, and the labelled
author's opinion), signs of copying, cost, and whether people can tell."""
from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from fruitgan.data.heldout_split import VALIDATION_PREFIX
from fruitgan.metrics.scores import HEALTHY_MEMORISATION
from fruitgan.report import analysis, tables
from fruitgan.report.runs import Run, fmt, number, span


def measured_verdict(row: dict) -> str:
    """One fruit's verdict from its test-part two-sample figure (tables.heldout_rows)."""
    t = row["test"]
    text = (f"two-sample accuracy {row['text']} on {row['n']} test drawings, best checkpoint "
            f"(epoch {t.get('epoch')}), measured once.")
    if not t.get("two_sample_decided"):
        text += " The interval is too wide to call: too few test drawings."
    elif t["two_sample_low"] > 0.5:
        text += (f" **Told apart**: a small network tells these fakes from real drawings {t['two_sample_accuracy']:.0%}"
                 " of the time, and even the interval's low end is above 0.5 (a coin flip). They do not pass as real.")
    else:
        text += " **Not told apart**: the interval holds 0.5; on these drawings the test cannot tell them from real."
    chose = next((q for q in row["validation"] if q["epoch"] == t.get("epoch")), {})
    val = chose.get(VALIDATION_PREFIX + "two_sample_accuracy")
    quick = chose.get(VALIDATION_PREFIX + "two_sample_epochs") != t.get("two_sample_epochs")   # the cheap check
    if number(val) and val < t.get("two_sample_low", val):
        text += (f" On the validation part that chose it, the same checkpoint scored {val:.2f}: "
                 + ("a quicker check (fewer passes) reads lower; " if quick else "")
                 + f"the best of {len(row['validation'])} milestones on the same drawings flatters, so the test part"
                 + (", measured in full," if quick else "") + " is reported.")
    if number(row["memo"]):
        healthy = row["memo"] >= HEALTHY_MEMORISATION
        text += (f" Memorisation ratio {row['memo']:.2f}: " + ("no sign of copying." if healthy
                                                             else "the fakes sit close to training drawings: copying."))
    return text


def verdicts(run: Optional[Run]) -> str:
    """Per fruit of ``run``: the measured verdict, or "not measured" and why, plus the author's opinion."""
    if run is None:
        return "No run: nothing to judge."
    seen = analysis.opinion(run)
    lines = [f"**Run {run.name}, {run.resolution} px.**"]
    for row in tables.heldout_rows(run):
        f = row["fruit"]
        line = measured_verdict(row) if row["text"] else f"not measured: {row['note'] or 'no held-out drawings'}."
        if f in seen:
            line += f" *Author's opinion* ({seen[f]['verdict']}): {seen[f]['seen']}"
        lines.append(f"- *{f}*: {line}")
    lines.append("\n*Author's opinion*: a person's reading of the run's last grids beside real drawings, not a "
                 "measurement." if seen else
                 "\nThis report holds no author's opinion of this run's pictures: judge its grids yourself.")
    return "\n".join(lines)


def copying(run: Run, held: Optional[Run]) -> str:
    """Signs of copying: FID to the training drawings below real against real, and the memorisation ratios."""
    rows = [r for r in tables.quality_rows(run) if number(r["fid"]) and number(r["real_fid"])]
    close = [r for r in rows if r["fid"] < r["real_fid"]]
    real, images = run.dataset("real_images"), run.dataset("images")
    aug = [1 - real[f] / images[f] for f in run.fruits if number(real.get(f)) and images.get(f)]
    text = "**Signs of copying.** "
    if close:
        text += ("The fakes' FID to the training drawings is below the FID between two halves of the real drawings "
                 "for " + ", ".join(f"{r['fruit']} ({r['fid']:.2f} vs {r['real_fid']:.2f})" for r in close)
                 + ". Fakes closer to the training drawings than real drawings are to each other is a sign of "
                 "copying: the generator may redraw its training drawings")
        text += (f", of which {span(aug, '.0%')} were augmented copies of a few real ones." if any(a > 0 for a in aug)
                 else ".")
        text += (f" The sign is rough: real against real compares halves of {span([r['half'] for r in rows], 'd')} "
                 "drawings, and FID grows as samples shrink, so part of the gap is sample size.")
    else:
        text += "No fruit's fakes are closer to the training drawings (FID) than real drawings are to each other."
    if not run.split_fruits():
        text += " This run has no held-out drawings, so it cannot measure copying directly."
    memo = [r for r in (tables.heldout_rows(held) if held else []) if number(r["memo"])]
    if memo:
        text += (f" The held-out run can: its memorisation ratio on the test part (fakes' distance to their nearest "
                 f"training drawing over new real drawings'; {HEALTHY_MEMORISATION} or more is healthy) is "
                 + ", ".join(f"{r['fruit']} {r['memo']:.2f}" for r in memo) + ". That clears its own fakes only: "
                 "another recipe on other data, it says nothing of this run's.")
    return text


def cost(run: Run) -> str:
    report = run.folder.read_cost_report() or {}
    totals = report.get("totals") or {}
    if not totals:
        return "**What it cost.** Not recorded."
    text = (f"**What it cost.** {fmt(report.get('training_time_minutes'), '.0f')} minutes of training on "
            f"{run.summary.get('device')}, peak memory {fmt(report.get('peak_memory_gb'), '.2f')} GiB: "
            f"${fmt(totals.get('training'), '.4f')} of compute and memory. A month of storage for the model folder "
            f"costs ${fmt(totals.get('storage'), '.4f')}.")
    if number(totals.get("storage")) and number(totals.get("training")) and totals["storage"] > totals["training"]:
        text += " Storage, not training, dominates: `--keep-checkpoint-every` sets how many checkpoints stay."
    return text


def people_section(model_dir: Path, fruits: Sequence[str]) -> str:
    """"Can people tell?": the finished sessions of the spot-the-fake test (fruitgan/people), pooled per fruit."""
    from fruitgan.people.results import pooled_human_figure

    lines = ["**Can people tell?** The share of drawings people judged right (real or fake); 0.5 = they cannot tell."]
    for f in fruits:
        p = pooled_human_figure(model_dir, f)
        lines.append(f"- *{f}*: " + ("no one has taken it yet." if p is None else
                                     f"{p['accuracy']:.2f} [{p['low']:.2f}, {p['high']:.2f}] over {p['judged']} "
                                     f"drawings in {p['sessions']} session(s)."))
    return "\n".join(lines)


def elsewhere(run: Run, held: Optional[Run]) -> str:
    """The fruits of ``run`` whose fakes cannot be measured there but whose held-out run measured them."""
    measured = [r["fruit"] for r in (tables.heldout_rows(held) if held and held is not run else []) if r["text"]]
    both = [f for f in run.fruits if f in measured and f not in run.split_fruits()]
    return (f"\n\n{', '.join(both).capitalize()}: measured on the held-out run above ({held.resolution} px), "
            f"not on this run's {run.resolution} px fakes." if both else "")


def disagreements(run: Run, rows) -> str:
    """Fruits the recogniser names, though in the author's opinion their pictures do not show them."""
    seen = analysis.opinion(run)
    named = [r for r in rows if number(r["recog"]) and r["recog"] >= 0.5
             and seen.get(r["fruit"], {}).get("verdict") == analysis.NOT_REAL]
    return "".join(f" {r['fruit'].capitalize()}: {r['recog']:.0%} recognised, yet in the author's opinion the "
                   f"pictures do not show {r['fruit']}. Trust the pictures here." for r in named)


def in_short(run: Run, held: Optional[Run]) -> str:
    """The answer to 4.5 in three sentences: measured where it can be, opinion where it cannot."""
    rows = [r for r in (tables.heldout_rows(held) if held else []) if r["text"]]
    text = "**In short.** "
    if rows:
        text += (f"On drawings they never saw, a small network tells the held-out run's fakes from real ones "
                 + ", ".join(f"{r['fruit']} {r['test']['two_sample_accuracy']:.0%}" for r in rows)
                 + " of the time (50% would be chance): to a machine they do not yet pass as real. ")
    seen = analysis.opinion(run)
    groups = {}
    for f, v in seen.items():
        groups.setdefault(v["verdict"], []).append(f)
    text += (f"Run {run.name}'s fakes are not measured (no held-out drawings)"
             + (": in the author's opinion, " + "; ".join(f"{v}: {', '.join(fs)}" for v, fs in groups.items())
                if groups else "") + ".")
    return text


def findings(run: Run, held: Optional[Run], noise: dict) -> str:
    """Section c): what was trained, each fruit's verdict, copying, the numbers, training, noise, cost."""
    real = run.dataset("real_images")
    rows = tables.quality_rows(run)
    parts = [in_short(run, held),
             f"**What was trained.** Run {run.name}: {run.summary.get('epochs_done')} epochs, {run.resolution} px, "
             f"{len(run.fruits)} fruits with {span(real.values(), 'd')} real drawings each. "
             + ("None has a held-out split." if not run.split_fruits() else
                f"Held-out split: {', '.join(run.split_fruits())}."),
             "**Verdicts.** A verdict is measured only where a fruit has drawings the GAN never saw.\n\n"
             + verdicts(held) + "\n\n" + verdicts(run) + elsewhere(run, held),
             copying(run, held),
             (f"**What the numbers say.** At the last epoch the recogniser named "
              + ", ".join(f"{r['fruit']} {r['recog']:.0%}" for r in rows if number(r["recog"]))
              + f" of the fakes as the intended fruit; on real drawings it never saw it is right "
              f"{tables.recogniser_reference(run)}. Recognition and FID say how typical a fake is, not whether it "
              "passes for real: only the two-sample test on held-out drawings can say that. Where the pictures "
              "and the numbers disagree, trust the pictures and the held-out test." + disagreements(run, rows)),
             analysis.epochs_done(run), analysis.noise_text(noise), cost(run)]
    return "\n\n".join(parts)

"""fruitgan/metrics' held-out figures: the two-sample test, the memorisation ratio, and recognisability that is
never judged by a one-class classifier.

Real images are the bundled bitmaps rawData/sample/bitmap/apple.npy (1000 real 28x28 Quick, Draw! apples),
shuffled once; tests that use made-up images ("noise", "thicker strokes") say so.
"""
import math
import shutil
import sys

import pytest
import torch

from fruitgan.metrics import classifier as fc
from fruitgan.metrics import features
from fruitgan.metrics import images as mi
from fruitgan.metrics import memorisation as mem
from fruitgan.metrics import real_drawings
from fruitgan.metrics import scores
from fruitgan.metrics import two_sample as ts
from fruitgan.data import quickdraw_formats as qf
from conftest import ROOT, SAMPLE
from fruitgan.util.user_io import UserError

sys.path.insert(0, str(ROOT / "benchmarks"))
import bench_two_sample as bench  # noqa: E402  (its made-up changes: the benchmark's rows are these cases)

RES = 28
HALF_LEVEL = 1.0 / 255          # half of one 8-bit step in [-1,1] units (a step is 2/255)
SAMPLE_FRUITS = ("apple", "banana", "blackberry", "grapes", "pear", "strawberry", "watermelon")
QUICK = fc.ClassifierTrainConfig(steps=20)     # the classifier's quality is not under test here, its data is


@pytest.fixture(scope="module")
def apples():
    """(1000,1,28,28) in [-1,1]: the bundled real apple bitmaps in a fixed random order."""
    return bench.bitmaps("apple")


# --------------------------------------------------------------------------------------------- two-sample test
# Cases with a known answer (its power is what is under test). Real against real and the made-up changes of
# position and framing use KNOWN_N drawings per side and KNOWN_EPOCHS passes per fold (448 steps in all, 12-17 s
# each on one busy core). At these sizes bench_two_sample.py measured real vs real 0.48 (interval 0.42-0.54),
# a 1 px shift 0.63 (0.57-0.69), a 2 px shift 0.78, one stray pixel 0.88: 120 per side keeps the interval
# (+-0.06) narrow enough to hold 0.5 out for the weakest, the 1 px shift. The full budget (200 passes) costs 5x.
KNOWN_N = 120
KNOWN_EPOCHS = 40


def _within(result, value):
    return result["two_sample_low"] <= value <= result["two_sample_high"]


def test_two_halves_of_real_drawings_cannot_be_told_apart(apples):
    """The "generated" half is real too, carrying float jitter below half an 8-bit step: quantised away."""
    real, other = apples[:KNOWN_N], apples[KNOWN_N:2 * KNOWN_N]
    jitter = (torch.rand(other.shape, generator=torch.Generator().manual_seed(1)) * 2 - 1) * 0.9 * HALF_LEVEL
    fake = (other + jitter).clamp(-1, 1)
    assert not torch.equal(fake, other) and torch.equal(mi.quantise_pixels(fake), mi.quantise_pixels(other))
    result = ts.two_sample_test(real, fake, epochs=KNOWN_EPOCHS)
    assert _within(result, 0.5) and abs(result["two_sample_accuracy"] - 0.5) <= 0.1, result
    assert result["two_sample_n"] == 240 and result["two_sample_real"] == 120      # every drawing labelled once
    assert result["two_sample_decided"] and result["two_sample_half_width"] < 0.07 and "two_sample_note" not in result


@pytest.mark.parametrize("change", ["shifted 1 px", "shifted 2 px", "one stray pixel"])
def test_two_sample_test_sees_where_a_drawing_sits(apples, change):
    """Made-up fakes: other real apples moved 1 or 2 px (up, down, left or right: black shifted in), or with one
    white pixel somewhere in the outermost 1-px ring. Google draws every apple so that its bounding box reaches
    the second pixel from the edge: a viewer sees each change, so must the test (its interval above 0.5)."""
    make = {"shifted 1 px": lambda x: bench.shifted(x, 1), "shifted 2 px": lambda x: bench.shifted(x, 2),
            "one stray pixel": bench.stray_ink}[change]
    other = apples[KNOWN_N:2 * KNOWN_N]
    fake = make(other)
    assert (fake != other).any(dim=(1, 2, 3)).float().mean() > 0.9                 # nearly every one changed
    result = ts.two_sample_test(apples[:KNOWN_N], fake, epochs=KNOWN_EPOCHS)
    assert result["two_sample_low"] > 0.5, result


def test_noise_is_told_apart_from_real_drawings(apples):
    noise = torch.rand(60, 1, RES, RES, generator=torch.Generator().manual_seed(2)) * 2 - 1
    result = ts.two_sample_test(apples[:60], noise)
    assert result["two_sample_accuracy"] >= 0.98 and result["two_sample_low"] > 0.9, result


def test_an_epoch_10_generator_is_clearly_told_apart(apples):
    """A GAN trained 10 epochs on 700 real apples (the trainer's grouped step) draws apple-ish blobs: the
    test must reject them clearly (the old one-split test on 100 drawings passed such fakes at 0.78)."""
    import gan_model as gm
    from fruitgan.learn import grouped as gg
    cfg = gm.GANConfig(resolution=RES)
    torch.manual_seed(0)
    gan = gg.GroupedGAN(cfg, 1)
    train, held = apples[:700], apples[700:800]
    gen = torch.Generator().manual_seed(3)
    for _ in range(10):
        order = torch.randperm(700, generator=gen)
        for start in range(0, 700 - 63, 64):
            gan.train_step(train[order[start:start + 64]][None], torch.randn(1, 64, cfg.noise_dim, generator=gen))
    fakes = gan.generate(torch.randn(1, 100, cfg.noise_dim, generator=gen))[0]
    result = ts.two_sample_test(held, fakes)
    assert result["two_sample_accuracy"] > 0.9 and result["two_sample_low"] > 0.85, result


def test_two_sample_test_sees_a_subtle_difference(apples):
    """Made-up fakes: real apples with strokes one pixel thicker. The test must see more than noise."""
    thicker = bench.thicker(apples[200:280])
    result = ts.two_sample_test(apples[:80], thicker)
    assert result["two_sample_accuracy"] > 0.85, result


def test_two_sample_test_is_deterministic_and_leaves_the_callers_stream(apples, monkeypatch):
    monkeypatch.setattr(ts, "TWO_SAMPLE_MAX_STEPS", 30)          # the same whatever its length
    state = torch.get_rng_state()
    first = ts.two_sample_test(apples[:40], apples[500:900])
    again = ts.two_sample_test(apples[:40], apples[500:900])
    assert first == again and torch.equal(state, torch.get_rng_state())
    assert first["two_sample_real"] == 40 and first["two_sample_n"] == 80   # balanced: 40 of the 400 "fakes"


def test_a_wide_interval_is_said_instead_of_calling_the_fakes_real(apples, monkeypatch):
    monkeypatch.setattr(ts, "TWO_SAMPLE_MAX_STEPS", 30)
    result = ts.two_sample_test(apples[:30], apples[500:530])
    assert result["two_sample_half_width"] > ts.TWO_SAMPLE_MAX_HALF_WIDTH and not result["two_sample_decided"]
    assert result["two_sample_note"].startswith("too few held-out drawings to call (30 real")


def test_wilson_interval_on_known_cases():
    low, high = ts.wilson_interval(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert ts.wilson_interval(0, 10)[0] == 0.0 and ts.wilson_interval(0, 10)[1] == pytest.approx(0.2775, abs=1e-3)
    assert ts.wilson_interval(10, 10)[1] == pytest.approx(1.0) and ts.wilson_interval(0, 0) == (0.0, 1.0)
    # +-0.1 at 0.5 needs about 96 labelled images: the smallest split's test part (53 real + 53 fake) is within
    assert (lambda lo, hi: (hi - lo) / 2)(*ts.wilson_interval(53, 106)) <= ts.TWO_SAMPLE_MAX_HALF_WIDTH


def test_two_sample_test_says_not_enough_real_drawings(apples):
    needed = ts.MIN_TWO_SAMPLE_REAL
    few = ts.two_sample_test(apples[:needed - 1], apples[100:400])
    assert few["two_sample_accuracy"] is None and few["two_sample_low"] is None
    assert few["two_sample_note"] == f"not enough real drawings ({needed - 1} held out, need {needed})"
    few_fakes = ts.two_sample_test(apples[:200], apples[300:310])
    assert few_fakes["two_sample_accuracy"] is None and "not enough generated images" in few_fakes["two_sample_note"]
    with pytest.raises(UserError, match="one size"):
        ts.two_sample_test(apples[:100], torch.zeros(100, 1, 64, 64))
    with pytest.raises(UserError, match=r"\(N, 1, R, R\)"):
        ts.two_sample_test(apples[:100, 0], apples[:100])


# --------------------------------------------------------------------------------------------- memorisation
def test_memorisation_ratio_exposes_a_copying_generator(apples):
    train, heldout = apples[:700], apples[700:900]
    copies = train[torch.randperm(700, generator=torch.Generator().manual_seed(3))[:200]]
    jittered = (copies + 0.9 * HALF_LEVEL).clamp(-1, 1)         # float noise does not hide a copy
    copying = mem.memorisation_ratio(jittered, train, heldout)
    assert copying["memorisation_ratio"] < 0.3, copying
    healthy = mem.memorisation_ratio(apples[900:], train, heldout)   # new real drawings "generated"
    assert 0.8 <= healthy["memorisation_ratio"] <= 1.25, healthy
    assert healthy["memorisation_n_heldout"] == 200 and healthy["memorisation_heldout_median"] > 0


def test_memorisation_ratio_says_not_enough_real_drawings(apples):
    few = mem.MIN_MEMORISATION_HELDOUT - 1
    result = mem.memorisation_ratio(apples[:50], apples[100:500], apples[:few])
    assert result["memorisation_ratio"] is None
    assert result["memorisation_note"] == f"not enough real drawings ({few} held out, need {mem.MIN_MEMORISATION_HELDOUT})"


def test_nearest_distances_in_blocks_equal_exact_differences_and_a_copy_is_at_zero(apples, monkeypatch):
    queries, reference = apples[:23].reshape(23, -1), apples[100:141].reshape(41, -1).clone()
    reference[17] = queries[4]                                          # one exact copy
    whole = torch.cdist(queries.double(), reference.double(), compute_mode="donot_use_mm_for_euclid_dist")
    monkeypatch.setattr(mem, "NEAREST_CHUNK", 7)
    blocks = [reference[s:s + 5] for s in range(0, 41, 5)]
    nearest = mem._nearest_distances(queries, blocks)
    assert torch.allclose(nearest, whole.min(dim=1).values, rtol=0, atol=1e-9) and nearest[4].item() == 0.0


def test_memorisation_ratio_reads_stored_pixels_block_by_block(apples, monkeypatch):
    """The training set as its stored uint8 pixels, converted a block at a time: the same ratio."""
    train, heldout, generated = apples[:300], apples[300:400], apples[400:450]
    pixels = ((train[:, 0] + 1) * 127.5).round().to(torch.uint8)
    monkeypatch.setattr(mem, "NEAREST_TRAIN_CHUNK", 64)
    expected = mem.memorisation_ratio(generated, train, heldout)
    assert mem.memorisation_ratio(generated, pixels, heldout) == pytest.approx(expected)
    # ... and as chosen rows of a larger store (the dataset's training part, never copied out whole)
    whole = ((apples[:, 0] + 1) * 127.5).round().to(torch.uint8)
    rows = torch.arange(300).flip(0)
    assert mem.memorisation_ratio(generated, whole, heldout, train_rows=rows) == pytest.approx(expected)
    assert mem.memorisation_ratio(generated, whole, heldout, train_rows=rows[:0])["memorisation_ratio"] is None


# --------------------------------------------------------------------------------------------- recognisability
def test_one_class_classifier_gives_no_recognisability(apples, tmp_path):
    classifier, _ = fc.load_or_train_classifier(tmp_path, "one", {"apple": apples[:100]}, train_config=QUICK)
    evaluator = features.QualityEvaluator(classifier, ["apple"], {"apple": apples[100:200]})
    metrics = evaluator.evaluate("apple", apples[200:264])
    assert "recognizability" not in metrics and "confidence" not in metrics
    assert "knows only apple" in metrics["recognizability_note"]
    assert metrics["fid"] >= 0 and 0 <= metrics["coverage"] <= 1            # the other figures stay
    ref = evaluator.reference("apple")
    assert ref["heldout_recognizability"] is None and ref["recognizability_all_real"] is None
    assert math.isfinite(scores.quality_score(metrics))                          # still ranks checkpoints
    assert "recognised" not in scores.format_metrics_table([{"fruit": "apple", **metrics}]).splitlines()[0].split()


def test_recognizer_knows_every_fruit_of_rawdata_and_excludes_heldout(workdir):
    images, details = real_drawings.render_rawdata_fruits(workdir, RES)
    assert sorted(images) == sorted(SAMPLE_FRUITS)
    apple = images["apple"]
    assert apple.shape[1:] == (1, RES, RES) and apple.min() == -1 and apple.max() == 1
    # Hold out 3 apples by key_id and 4 others by their pixels: none of them is rendered for training.
    preset = qf.QUALITY_PRESETS[qf.DEFAULT_QUALITY]                         # the drawings that are rendered
    usable = (d for d in qf.iter_drawings(SAMPLE / "simplified" / "apple.ndjson", "apple")
              if isinstance(d, qf.Drawing) and preset.reject_reason(d) is None)
    first_keys = [d.key_id for _, d in zip(range(3), usable)]
    by_pixels = apple[3:7]
    kept, details2 = real_drawings.render_rawdata_fruits(workdir, RES, exclude_key_ids=first_keys,
                                                         exclude_images=by_pixels)
    assert details2["apple"]["excluded"] == 7 and kept["apple"].shape[0] == apple.shape[0] - 7
    as_pixels = [((part[:, 0] + 1) * 127.5).round().to(torch.uint8) for part in (by_pixels[:1], by_pixels[1:])]
    kept3, details3 = real_drawings.render_rawdata_fruits(workdir, RES, exclude_key_ids=first_keys,
                                                          exclude_images=iter(as_pixels))   # a fruit at a time
    assert details3["apple"]["excluded"] == 7 and torch.equal(kept3["apple"], kept["apple"])
    held = torch.cat([apple[:3], by_pixels]).reshape(7, -1)
    assert not (torch.cdist(kept["apple"].reshape(kept["apple"].shape[0], -1), held) == 0).any()
    assert kept["banana"].shape == images["banana"].shape                   # other fruits untouched
    model, info = fc.load_or_train_recognizer(workdir, "1", RES, exclude_key_ids=first_keys,
                                              exclude_images=by_pixels, train_config=QUICK)
    assert sorted(model.fruits) == sorted(SAMPLE_FRUITS) and info["trained"]
    assert info["path"].endswith(f"recognizer_version1_{RES}px.pt") and info["rendered"]["apple"]["excluded"] == 7
    again, info2 = fc.load_or_train_recognizer(workdir, "1", RES, exclude_key_ids=first_keys,
                                               exclude_images=by_pixels, train_config=QUICK)
    assert not info2["trained"]                                              # cached
    _, other = fc.load_or_train_recognizer(workdir, "1", RES, train_config=QUICK)
    assert other["trained"]                                                  # other exclusions: other data


def test_one_fruit_rawdata_gets_no_recognizer(workdir):
    for path in (workdir / "rawData" / "sample").rglob("*"):
        if path.is_file() and path.suffix in (".ndjson", ".npy") and not path.name.startswith("apple"):
            path.unlink()
    model, info = fc.load_or_train_recognizer(workdir, "1", RES, train_config=QUICK)
    assert model is None and info["fruits"] == ["apple"]
    assert info["note"].startswith("not enough fruits to judge recognisability")
    shutil.rmtree(workdir / "rawData")
    model, info = fc.load_or_train_recognizer(workdir, "1", RES, train_config=QUICK)
    assert model is None and "found: none" in info["note"]


# --------------------------------------------------------------------------------------------- score and table
def test_quality_score_prefers_the_two_sample_test():
    assert scores.quality_score({"two_sample_accuracy": 0.6}) > scores.quality_score({"two_sample_accuracy": 0.8})
    # The two-sample figure decides even against better fallback figures ...
    better_old = {"recognizability": 1.0, "coverage": 1.0, "fid": 0.0}
    assert scores.quality_score({"two_sample_accuracy": 0.6, "recognizability": 0.1, "coverage": 0.1, "fid": 90.0}) > \
        scores.quality_score({"two_sample_accuracy": 0.8, **better_old})
    # ... but copying training drawings (which fools the test) costs more than a worse accuracy.
    assert scores.quality_score({"two_sample_accuracy": 0.5, "memorisation_ratio": 0.1}) < \
        scores.quality_score({"two_sample_accuracy": 0.9, "memorisation_ratio": 1.0})
    assert scores.quality_score({"two_sample_accuracy": 0.7, "memorisation_ratio": 1.2}) == pytest.approx(0.3)
    assert scores.quality_score({"two_sample_accuracy": float("nan")}) == -math.inf
    # Not measured (None + note): the score falls back to the other figures.
    fallback = {"two_sample_accuracy": None, "two_sample_note": "not enough real drawings", **better_old}
    assert scores.quality_score(fallback) == scores.quality_score(better_old) == pytest.approx(2.0)


def test_table_shows_the_new_columns_and_no_notes_as_labels():
    rows = [{"fruit": "apple", "epoch": 10, "two_sample_accuracy": 0.71, "two_sample_half_width": 0.03,
             "two_sample_low": 0.68, "two_sample_high": 0.74, "two_sample_n": 400, "two_sample_real": 200,
             "two_sample_decided": True,
             "memorisation_ratio": 0.98, "memorisation_n_heldout": 200, "recognizability": 0.9},
            {"fruit": "banana", "epoch": 10, "two_sample_accuracy": None, "two_sample_note": "not enough real drawings",
             "memorisation_ratio": None, "memorisation_note": "not enough real drawings", "recognizability": 0.5}]
    lines = scores.format_metrics_table(rows).splitlines()
    assert lines[0].split() == ["fruit", "epoch", "2-sample", "+-", "memo.", "recognised"]
    assert lines[1].split() == ["apple", "10", "0.71", "0.03", "0.98", "90%"]
    assert lines[2].split() == ["banana", "10", "-", "-", "-", "50%"]

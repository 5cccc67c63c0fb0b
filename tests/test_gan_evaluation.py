"""fruitgan/metrics: the quality classifier (classifier.py) and the figures it measures (features.py,
scores.py), on REAL drawings.

The real images are the bundled sample's raw Quick, Draw! strokes (rawData/sample/raw, 25-40 distinct
drawings per fruit), drawn here with PIL at 28 px the simple way (fit to the box, white lines on black),
independent of the project's renderer. Tests marked "synthetic" say so.
"""
import json
import math

import numpy as np
import pytest
import torch
from PIL import Image, ImageDraw

from fruitgan.metrics import classifier as fc
from fruitgan.metrics import features
from fruitgan.metrics import scores
from conftest import SAMPLE
from fruitgan.util.user_io import UserError

RES = 28
FRUITS = ("apple", "banana", "grapes", "watermelon")
SUPERSAMPLE = 4            # draw 4x larger, then box-filter down: anti-aliased strokes
MARGIN = 0.1


def render_strokes(strokes, res=RES):
    """[[xs, ys, (ts)], ...] -> (res, res) uint8, drawing fitted to the box with its aspect ratio kept."""
    pts = np.concatenate([np.asarray(s[:2], dtype=float).T for s in strokes])
    lo, span = pts.min(0), max(float((pts.max(0) - pts.min(0)).max()), 1e-6)
    big = res * SUPERSAMPLE
    scale = big * (1 - 2 * MARGIN) / span
    offset = (big - (pts.max(0) - lo) * scale) / 2
    img = Image.new("L", (big, big), 0)
    draw = ImageDraw.Draw(img)
    for s in strokes:
        xy = [tuple((np.asarray(p) - lo) * scale + offset) for p in zip(s[0], s[1])]
        draw.line(xy * 2 if len(xy) == 1 else xy, fill=255, width=max(1, round(1.5 * SUPERSAMPLE * res / 28)))
    return np.asarray(img.resize((res, res), Image.BOX))


def real_drawings(fruit, res=RES):
    """(N,1,R,R) in [-1,1]: every distinct (key_id) drawing of the fruit in the bundled raw sample."""
    seen, images = set(), []
    with open(SAMPLE / "raw" / f"{fruit}.ndjson", encoding="utf-8") as fh:
        for line in fh:
            record = json.loads(line)
            if record["key_id"] not in seen:
                seen.add(record["key_id"])
                images.append(render_strokes(record["drawing"], res))
    return torch.from_numpy(np.stack(images)).float().div(127.5).sub(1).unsqueeze(1)


@pytest.fixture(scope="module")
def real():
    return {f: real_drawings(f) for f in FRUITS}


@pytest.fixture(scope="module")
def trained(real, tmp_path_factory):
    """(workdir, classifier, info): the classifier trained once for this module on the real drawings."""
    workdir = tmp_path_factory.mktemp("evalwork")
    classifier, info = fc.load_or_train_classifier(workdir, "1", real, seed=0)
    return workdir, classifier, info


@pytest.fixture(scope="module")
def evaluator(trained, real):
    return features.QualityEvaluator(trained[1], list(FRUITS), real)


def test_heldout_split_keeps_copies_of_heldout_drawings_out_of_training():
    """Synthetic index data: 10 real drawings, each with 2 augmented copies after them."""
    n_real = 10
    augmented = torch.tensor([False] * n_real + [True] * (2 * n_real))
    source = torch.cat([torch.arange(n_real), torch.arange(n_real).repeat_interleave(2)])
    data = fc._split_fruit(torch.zeros(3 * n_real, 1, RES, RES), augmented, source, 0.2, torch.Generator().manual_seed(1))
    held = set(data.heldout_idx.tolist())
    train = set(data.train_idx.tolist())
    assert len(held) == 2 and all(i < n_real for i in held)                 # held-out: real drawings only
    assert not held & train
    assert all(int(source[i]) not in held for i in train)                   # no copy of a held-out drawing
    assert len(train) == 3 * n_real - 3 * len(held)                         # everything else is trained on


def test_classifier_learns_real_fruits_and_is_cached(trained, real, tmp_path):
    workdir, classifier, info = trained
    assert info["trained"] and info["fruits"] == list(FRUITS)
    path = workdir / "models" / "evaluators" / f"classifier_version1_{RES}px.pt"
    assert info["path"] == str(path) and path.is_file()
    # Held-out real drawings: far better than the 25% of guessing among four fruits.
    assert info["heldout_accuracy"] >= 0.5, info
    assert sum(info["heldout_counts"].values()) >= 4 * len(FRUITS)
    payload = torch.load(path, weights_only=True)                          # loads without pickle
    assert payload["fruits"] == list(FRUITS) and payload["resolution"] == RES and len(payload["data_hash"]) == 64
    # Second call: loaded from the cache, the same network, and the caller's random stream untouched.
    state = torch.get_rng_state()
    again, info2 = fc.load_or_train_classifier(workdir, "1", {f: real[f] for f in reversed(FRUITS)})
    assert not info2["trained"] and torch.equal(state, torch.get_rng_state())
    assert all(torch.equal(a, b) for a, b in zip(classifier.state_dict().values(), again.state_dict().values()))
    assert info2["heldout_accuracy"] == info["heldout_accuracy"]


def test_changed_data_or_settings_retrain(real, tmp_path):
    quick = fc.ClassifierTrainConfig(steps=5)
    state = torch.get_rng_state()
    _, first = fc.load_or_train_classifier(tmp_path, "v2", real, train_config=quick)
    assert first["trained"] and torch.equal(state, torch.get_rng_state())   # training leaves the caller's RNG alone
    _, same = fc.load_or_train_classifier(tmp_path, "v2", real, train_config=quick)
    assert not same["trained"]
    fewer = dict(real, apple=real["apple"][1:])
    _, changed = fc.load_or_train_classifier(tmp_path, "v2", fewer, train_config=quick)
    assert changed["trained"]
    _, other = fc.load_or_train_classifier(tmp_path, "v2", fewer, train_config=fc.ClassifierTrainConfig(steps=6))
    assert other["trained"]
    # A damaged cache file is retrained, not an error.
    path = tmp_path / "models" / "evaluators" / f"classifier_versionv2_{RES}px.pt"
    path.write_bytes(b"garbage")
    _, repaired = fc.load_or_train_classifier(tmp_path, "v2", fewer, train_config=quick)
    assert repaired["trained"] and path.stat().st_size > 1000


@pytest.mark.parametrize("res", [28, 64, 128])
def test_classifier_takes_any_resolution(res):
    net = fc.FruitClassifier(FRUITS).eval()
    x = torch.rand(3, 1, res, res) * 2 - 1
    assert net.features(x).shape == (3, fc.FEATURE_DIM) and net(x).shape == (3, len(FRUITS))


def test_real_drawings_score_like_real_noise_does_not(evaluator, real):
    gen = torch.Generator().manual_seed(0)   # the noise must not depend on what earlier tests drew
    for fruit in FRUITS:
        ref = evaluator.reference(fruit)
        noise = evaluator.evaluate(fruit, torch.rand(256, 1, RES, RES, generator=gen) * 2 - 1)
        own = evaluator.evaluate(fruit, real[fruit])
        assert own["recognizability"] >= 0.8 and own["fid"] < 1e-3       # the real set against itself
        assert own["coverage"] == 1.0 and own["recall"] == 1.0
        # Two halves of the real drawings are far closer than noise is to them.
        assert ref["fid_real_halves"] < 0.25 * noise["fid"], (fruit, ref, noise)
        assert abs(ref["fid_uniform_noise"] - noise["fid"]) < 0.25 * noise["fid"]
        assert noise["coverage"] <= 0.1 and noise["recall"] <= 0.1 and ref["coverage"] >= 0.6
        assert ref["num_real"] == real[fruit].shape[0] and noise["num_generated"] == 256
        assert scores.quality_score(own) > scores.quality_score(noise)
    # The classifier puts noise somewhere, but nowhere near as often in the right fruit as real drawings.
    noise_recog = [evaluator.evaluate(f, torch.rand(64, 1, RES, RES, generator=gen) * 2 - 1)["recognizability"] for f in FRUITS]
    assert sum(r > 0.5 for r in noise_recog) <= 1


def test_another_fruit_is_not_recognised(evaluator, real):
    result = evaluator.evaluate("apple", real["banana"])
    assert result["recognizability"] <= 0.2
    assert result["fid"] > 3 * evaluator.reference("apple")["fid_real_halves"]


def test_mode_collapse_shows_in_recall_and_coverage(evaluator, real):
    """One real apple repeated 256 times: each image looks real, the set covers almost nothing."""
    apples = real["apple"]
    real_set = features.QualityEvaluator(evaluator.classifier, ["apple"], {"apple": apples[1:]})
    collapsed = real_set.evaluate("apple", apples[:1].repeat(256, 1, 1, 1))
    ref = real_set.reference("apple")
    assert collapsed["recall"] <= 0.05 and collapsed["coverage"] <= 0.35
    assert collapsed["coverage"] < ref["coverage"] - 0.3 and collapsed["recall"] < ref["recall"] - 0.5
    assert collapsed["fid"] > ref["fid_real_halves"]
    assert scores.quality_score(collapsed) < scores.quality_score(real_set.evaluate("apple", apples[1:]))


def test_manifold_metrics_on_known_point_sets():
    """Synthetic points: identical sets, far-apart sets, and a collapsed set."""
    gen = torch.Generator().manual_seed(0)
    a = torch.randn(50, 8, generator=gen)
    same = features.manifold_metrics(a, a.clone())
    assert same["precision"] == same["recall"] == same["coverage"] == 1.0 and same["density"] == pytest.approx(1.0)
    far = features.manifold_metrics(a, a + 100.0)
    assert far["precision"] == far["recall"] == far["coverage"] == far["density"] == 0.0
    one = features.manifold_metrics(a, a[:1].repeat(40, 1))
    assert one["precision"] == 1.0 and one["recall"] <= 1 / 50 and one["coverage"] <= 0.3
    tiny = features.manifold_metrics(a[:1], a)
    assert math.isnan(tiny["precision"])


def test_evaluate_refuses_wrong_shapes_and_fruits(evaluator):
    with pytest.raises(UserError, match=r"expected \(N, 1, 28, 28\)"):
        evaluator.evaluate("apple", torch.zeros(8, 1, 64, 64))
    with pytest.raises(UserError, match="measures apple, banana, grapes, watermelon"):
        evaluator.evaluate("pear", torch.zeros(8, 1, RES, RES))


def test_quality_score_and_table():
    good = {"recognizability": 0.9, "coverage": 0.7, "fid": 5.0}
    collapsed = {"recognizability": 1.0, "coverage": 0.05, "fid": 40.0}
    assert scores.quality_score(good) > scores.quality_score(collapsed)
    assert scores.quality_score({"recognizability": 0.9, "coverage": 0.7, "fid": 50.0}) < scores.quality_score(good)
    assert scores.quality_score({"recognizability": float("nan"), "coverage": 1, "fid": 1}) == -math.inf
    assert scores.quality_score({}) == -math.inf
    table = scores.format_metrics_table([{"fruit": "apple", "epoch": 10, **good},
                                     {"fruit": "banana", "epoch": 20, "recognizability": 0.5}])
    lines = table.splitlines()
    assert lines[0].split() == ["fruit", "epoch", "recognised", "FID", "cover."]
    assert lines[1].split() == ["apple", "10", "90%", "5.00", "0.70"]
    assert lines[2].split() == ["banana", "20", "50%", "-", "-"]

"""The benchmarks run end to end at tiny sizes and print consistent figures (no timing is asserted)."""
import json
import re
import sys

import pytest
import torch

from conftest import ROOT, run_script
from fruitgan.util.user_io import UserError


def _floats(line: str) -> list:
    return [float(x) for x in re.findall(r"\d+\.\d+", line)]


def bench_main(name: str, argv, capsys, monkeypatch):
    """(exit code, stdout, stderr) of benchmark ``name``'s main() through run_main in this process, as run_script
    would start it (from the repository, no display). Its timed runs are still fresh processes of their own (its
    workers); only the orchestrating process is this one, whose torch threads and random state are restored."""
    import importlib

    from fruitgan.util.user_io import run_main

    sys.path.insert(0, str(ROOT / "benchmarks"))
    module = importlib.import_module(name)
    monkeypatch.chdir(ROOT)
    monkeypatch.setenv("MPLBACKEND", "Agg")
    monkeypatch.delenv("DISPLAY", raising=False)
    threads, state = torch.get_num_threads(), torch.get_rng_state()
    capsys.readouterr()
    try:
        code = run_main(module.main, list(argv))
    finally:
        torch.set_num_threads(threads)
        torch.set_rng_state(state)
    out, err = capsys.readouterr()
    return code, out, err


def test_bench_train_prints_both_methods_and_their_ratio(capsys, monkeypatch):
    code, out, err = bench_main("bench_train", ["--sizes", "28", "--steps", "1", "--warmup", "0", "--rounds", "1",
                                                "--batch", "4", "--threads", "1"], capsys, monkeypatch)
    assert code == 0, out + err
    assert "SYNTHETIC data" in out
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("28 "))
    ref, trainer, ratio = _floats(row)[:3]
    assert ref > 0 and trainer > 0
    assert abs(ratio - trainer / ref) <= 0.01 * ratio + 0.005   # the ratio is of the two printed rates


def test_bench_train_refuses_bad_sizes_in_one_line(capsys):
    """Through the script's own main() and run_main, in process (the refusal is under test, not torch's start)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_train
    from fruitgan.util.user_io import run_main

    capsys.readouterr()
    assert run_main(bench_train.main, ["--sizes", "abc"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "--sizes" in err


def test_bench_convert_times_both_methods_on_the_same_drawings():
    r = run_script("benchmarks/bench_convert.py", "--lines", "200", "--workers", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {ln.split("|")[1].strip(): ln for ln in r.stdout.splitlines() if ln.startswith("| ")}
    naive = next(v for k, v in rows.items() if k.startswith("naive"))
    project = next(v for k, v in rows.items() if k.startswith("image_conversion.convert"))
    assert int(naive.split("|")[2]) == int(project.split("|")[2]) == 200   # same work on both sides
    ratio = next(v for k, v in rows.items() if k.startswith("ratio"))
    expected = float(project.split("|")[4]) / float(naive.split("|")[4])
    printed = float(ratio.split("|")[4].strip().rstrip("x"))
    assert abs(printed - expected) < 0.05 * expected + 0.01   # rates are printed rounded to whole drawings/s


def test_bench_quality_trains_each_recipe_and_prints_the_table(tmp_path, capsys):
    """The training run is the script as a user starts it; the refusals and the read-back go through the same
    main() and run_main in process (what they print and return is under test, not a second start of torch)."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_quality
    from fruitgan.util.user_io import run_main

    def in_process(*argv):
        code = run_main(bench_quality.main, list(argv))
        out, err = capsys.readouterr()
        return code, out, err

    args = ("benchmarks/bench_quality.py", "--fruit", "pear", "--count", "30", "--epochs", "1",
            "--recipes", "default,no_ema", "--keep-models", str(tmp_path / "kept"), "--steps-per-epoch", "2",
            "--seeds", "1")
    r = run_script(*args)
    assert r.returncode == 0, r.stderr
    assert "pear, 28 px, 1 epochs, 2 steps per epoch" in r.stdout
    config = json.loads((tmp_path / "kept" / "model_bench_default" / "info" /
                         "training_config_bench_default.json").read_text())
    assert config["steps_per_epoch"] == 2
    code, _, err = in_process("--train-drawings", "30", "--steps-per-epoch", "2")
    assert code != 0 and "does not go with --train-drawings" in err
    assert all((tmp_path / "kept" / f"model_bench_{n}" / "generator_pear.pt").is_file() for n in ("default", "no_ema"))
    code, _, err = in_process(*args[1:])     # a kept folder is never overwritten: refused before any training
    assert code != 0 and "already exists" in err and err.count("\n") == 1 and err.startswith("error: ")
    table = [ln.split("|")[1:-2] for ln in r.stdout.splitlines() if ln.startswith("| ")]   # all but minutes
    code, back, err = in_process("--fruit", "pear", "--recipes", "default,no_ema",
                                 "--from-kept", str(tmp_path / "kept"), "--seeds", "1")
    assert code == 0, err
    assert [ln.split("|")[1:-2] for ln in back.splitlines() if ln.startswith("| ")] == table
    assert "pear, 28 px, 1 epochs, trained 20" in back
    code, _, err = in_process("--fruit", "apple", "--recipes", "default",
                              "--from-kept", str(tmp_path / "kept"), "--seeds", "1")
    assert code != 0 and "no finished apple run" in err and err.count("\n") == 1 and err.startswith("error: ")
    assert "held-out split of the first 30 real drawings" in r.stdout
    assert "measured 20" in r.stdout and "command: python benchmarks/bench_quality.py --fruit pear" in r.stdout
    lines = r.stdout.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("| recipe"))
    assert [c.strip() for c in lines[top].split("|")[1:5]] == ["recipe", "seed", "two-sample accuracy (test part)",
                                                               "95% interval"]
    assert [line.split("|")[1].strip() for line in lines[top + 2:top + 4]] == ["default", "no_ema"]
    assert "not enough real drawings" in r.stdout        # pear's 40 drawings allow no held-out split


def test_bench_quality_calls_a_recipe_better_only_beyond_the_spread_over_seeds():
    """Hand-computed cases: means 0.90 vs 0.80 with spreads 0.02 and 0.04 -> better; 0.90 vs 0.88 with a spread
    of 0.06 -> no difference; one seed each -> never called."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_quality as bq

    def rows(name, values):
        return [{"recipe": name, "seed": s, "two_sample_accuracy": v} for s, v in enumerate(values)]

    ref = rows("default", [0.89, 0.90, 0.91])
    assert bq.spreads(ref + rows("x", [0.78, 0.80, 0.82]))["x"] == pytest.approx((0.80, 0.78, 0.82))
    assert bq.verdicts(ref + rows("x", [0.78, 0.80, 0.82]))[0].endswith(": better")
    assert bq.verdicts(ref + rows("x", [0.96, 0.98, 1.0]))[0].endswith(": worse")
    assert "no difference" in bq.verdicts(ref + rows("x", [0.85, 0.88, 0.91]))[0]
    assert "one seed" in bq.verdicts(rows("default", [0.9]) + rows("x", [0.5]))[0]
    assert bq.recipe_model("ema_0.9999", 2) == "bench_ema_0_9999_s2" and bq.recipe_model("default") == "bench_default"


def test_bench_quality_few_drawings_regime_trains_on_n_and_tests_on_the_full_part(monkeypatch, tmp_path):
    """apple on 5 of its stroke drawings (augmented or not), tested on the full dataset's test part."""
    import shutil

    sys.path.insert(0, str(ROOT / "benchmarks"))
    import data_loader
    import few_drawings
    from bench_quality import build_dataset

    build_dataset(tmp_path, ROOT, "apple", 28)
    out = few_drawings.build(tmp_path, "apple", "quality", 5, 40, needs_strokes=True)
    base = data_loader.load_fruit(tmp_path, "quality", "apple")
    for version, n in ((out["plain"], 5), (out["strokes"], 40)):
        ds = data_loader.load_fruit(tmp_path, version, "apple")
        assert ds.train_index.numel() == n and int((~ds.augmented[ds.train_index]).sum()) == 5
        assert torch_equal(ds.pixels[ds.test_index], base.pixels[base.test_index])
        assert torch_equal(ds.pixels[ds.validation_index], base.pixels[base.validation_index])
        # nothing trained on is a held-out drawing of the full dataset (by pixels)
        held = {bytes(x) for x in base.pixels[base.heldout_index].numpy()}
        assert not any(bytes(x) in held for x in ds.pixels[ds.train_index].numpy())
    assert out["steps_per_epoch"] == 1 and "twins of held-out bitmaps" in out["note"]
    shutil.rmtree(tmp_path)


def torch_equal(a, b) -> bool:
    import torch

    return a.shape == b.shape and torch.equal(a, b)


def test_bench_run_times_whole_runs_of_both_methods_and_their_parts(capsys, monkeypatch):
    code, out, err = bench_main("bench_run", ["--sizes", "28", "--images", "8", "--epochs", "1", "--batch", "4",
                                              "--eval-samples", "8", "--rounds", "1", "--threads", "1",
                                              "--precision", "bf16"], capsys, monkeypatch)
    assert code == 0, out + err
    assert "SYNTHETIC" in out
    assert "trainer: bf16 (--precision bf16)," in out and "reference: fp32," in out   # the asked arithmetic
    row = next(ln for ln in out.splitlines() if ln.strip().startswith("28 "))
    ref, trainer, ratio = _floats(row)[:3]
    assert ref > 0 and trainer > 0
    assert abs(ratio - ref / trainer) <= 0.01 * ratio + 0.006   # the speed-up is of the two printed times
    detail = next(ln for ln in out.splitlines() if "trainer detail" in ln)
    for part in ("steps", "checkpoints", "evaluation", "milestone_images", "history_writes", "other"):
        assert f"{part} " in detail
    projected = next(ln for ln in out.splitlines() if "projected to 400 epochs" in ln)
    ref_h, fast_h, long_ratio = _floats(projected.split("):", 1)[1])[:3]
    assert ref_h > 0 and fast_h > 0
    assert abs(long_ratio - ref_h / fast_h) <= 0.01 * long_ratio + 0.02


def test_run_projection_scales_each_part_by_what_it_is_paid_per():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_run

    rb = bench_run.RunBench(epochs=2, milestones=(1,), checkpoint_minutes=5.0, project_epochs=400)
    parts = {"steps": 10.0, "checkpoints": 1.0, "evaluation": 4.0, "milestone_images": 2.0,
             "history_writes": 0.0, "other": 0.5, "total": 17.5}
    measured = {"seconds": 20.5, "parts": parts}                       # 3 s of set-up before the loop
    marks = len(bench_run.milestone_epochs(bench_run.settings.MILESTONES.default, 400))   # 9
    # reference: a checkpoint every epoch, so checkpoints scale with epochs like the steps
    assert bench_run.project(measured, "reference", rb) == pytest.approx(3 + 2000 + 100 + 200 + 3 * marks)
    # trainer: 2 measured checkpoints (epoch 1 milestone, the end); over 400 epochs one at each milestone,
    # every 100th epoch (the default cadence), and one per 5 minutes of the 2000 s of steps
    marks_400 = bench_run.milestone_epochs(bench_run.settings.MILESTONES.default, 400)
    every = bench_run.settings.KEEP_CHECKPOINT_EVERY.default
    written = len(bench_run.checkpoint_epochs(400, marks_400, every)) + int(2000 // 300)
    assert written == 9 + 6
    assert bench_run.project(measured, "trainer", rb) == pytest.approx(3 + 2000 + 100 + 3 * marks + 0.5 * written)


def test_bench_scale_converts_packs_and_trains_with_each_stage_s_memory():
    r = run_script("benchmarks/bench_scale.py", "--drawings", "40", "--reference-drawings", "10", "--steps", "1",
                   "--batch", "8", "--no-eval", timeout=900)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "synthetic-from-real drawings" in r.stdout
    rows = {ln.split("|")[1].strip(): ln.split("|") for ln in r.stdout.splitlines() if ln.startswith("| ")}
    assert int(rows["convert (drawings)"][2]) == int(rows["pack (images)"][2]) == 7 * 40
    assert int(rows["train (images stepped)"][2]) == 7 * 1 * 8
    assert all(float(rows[k][6]) > 0 for k in ("convert (drawings)", "pack (images)", "train (images stepped)"))
    data = next(ln for ln in r.stdout.splitlines() if ln.startswith("datasets as uint8"))
    assert f"{7 * 40 * 64 * 64 / 1024 ** 3:.2f} GiB" in data      # N x 64 x 64 bytes per fruit, read from the files
    assert "reference run on 7 x 10 drawings" in r.stdout and "x its size to the training peak" in r.stdout


def test_bench_scale_s_memory_bound_counts_only_what_the_data_adds():
    """Made-up peaks: the reference run's peak is what does not grow with the data; the rest is the data's."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_scale

    gib = 1024 ** 3
    run = {"stages": [{"peak": 9 * gib}], "uint8": 5 * gib, "reference": {"drawings": 10, "peak": 3 * gib,
                                                                          "uint8": 1 * gib}}
    assert bench_scale.memory_lines(run)[-1].endswith("1.50 x its size to the training peak, against the bound 1.5: within")
    run["stages"][0]["peak"] = 10 * gib
    assert bench_scale.memory_lines(run)[-1].endswith("OVER") and "1.75 x" in bench_scale.memory_lines(run)[-1]
    assert "not measured" in bench_scale.memory_lines({**run, "reference": None})[-1]


def test_bench_scale_projects_the_default_run_s_evaluation_share_from_the_measured_parts(tmp_path):
    """Made-up parts of a 10-step run: the projection scales the steps, counts the checks, pays the test once."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_scale
    from fruitgan.learn.config import milestone_epochs
    from fruitgan.models.folder import ModelFolder
    from fruitgan.util import settings

    folder = ModelFolder.in_workdir(tmp_path, bench_scale.VERSION)
    folder.write_summary({"time": {"steps": 20.0, "evaluation": 7 * 3.0 + 50.0}})
    for i, fruit in enumerate(bench_scale.FRUITS):       # the largest training part sets the steps per epoch
        folder.write_history(fruit, {"num_train_images": 6400 - i, "test_quality": {"seconds": 50.0 if i == 0 else 0}})
    e = bench_scale.default_run_evaluation(tmp_path, bench_scale.run_parts(tmp_path), steps=10, batch=64)
    marks = len(milestone_epochs(settings.MILESTONES.default, settings.EPOCHS.default))
    assert e["steps"] == 100 * settings.EPOCHS.default and e["step_seconds"] == pytest.approx(2.0 * e["steps"])
    assert e["check"] == pytest.approx(21.0) and e["final"] == 50.0 and e["marks"] == marks
    evaluation = (marks + 1) * 21.0 + 50.0
    assert e["share"] == pytest.approx(evaluation / (evaluation + e["step_seconds"]))
    assert "projected from the parts above" in bench_scale.format_table({
        "stages": [{"stage": "train", "items": 640, "seconds": 90.0, "cpu": 90.0, "peak": 1}], "uint8": 1,
        "reference": None, "evaluate": True, "load": 0.0, "projected": e})



def test_bench_two_sample_prints_each_known_answer_case(monkeypatch, capsys):
    """In process, with the test's CNN trained briefly: the table's rows, sizes and a clear noise verdict."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_two_sample
    from fruitgan.metrics import two_sample as ts
    monkeypatch.setattr(ts, "TWO_SAMPLE_MIN_STEPS", 20)
    monkeypatch.setattr(ts, "TWO_SAMPLE_MAX_STEPS", 20)
    assert bench_two_sample.main(["--apple", "20", "--banana", "20", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = {ln.split("|")[1].strip(): ln.split("|") for ln in out.splitlines() if ln.startswith("| ") and "---" not in ln}
    assert "command: python benchmarks/bench_two_sample.py --apple 20" in out
    assert {"apple: real vs real (20 each)", "banana: real vs real (20 each)", "apple: real vs noise (20 each)",
            "apple: real vs strokes 1 px thicker (20 each)", "apple: our renderer vs Google's bitmaps (100 each)",
            "banana: our renderer vs Google's bitmaps (100 each)"} <= set(rows)
    assert float(rows["apple: real vs noise (20 each)"][3]) >= 0.9     # noise is easy even for a brief CNN


def test_bench_two_sample_thicker_strokes_only_add_ink():
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_two_sample

    apples = bench_two_sample.bitmaps("apple")[:10]
    thick = bench_two_sample.thicker(apples)
    assert thick.shape == apples.shape and bool((thick >= apples).all()) and float((thick - apples).sum()) > 0



def test_every_recipe_trains_a_model_with_a_valid_name():
    """A recipe name with a dot (ema_0.9999) once stopped a run of hours at its third recipe."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_quality
    from fruitgan.util.safe_files import NAME_PATTERN

    names = [bench_quality.recipe_model(n) for n in bench_quality.RECIPES]
    assert all(NAME_PATTERN.match(n) for n in names) and len(set(names)) == len(names)


def test_bench_giveaway_removes_one_detail_from_both_sets():
    """Each change is applied alike to real and fake: faint ink only loses faint pixels, black and white leaves
    two levels, half size halves the side."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_giveaway as bg
    from fruitgan.metrics import images as ge
    x = torch.linspace(-1, 1, 2 * 28 * 28).reshape(2, 1, 28, 28)
    px, faint = ge.pixel_levels(x), ge.pixel_levels(bg.faint_off(x))
    assert bool((faint[px < bg.FAINT_LEVEL] == 0).all()) and torch.equal(faint[px >= bg.FAINT_LEVEL],
                                                                           px[px >= bg.FAINT_LEVEL])
    assert set(bg.black_and_white(x).unique().tolist()) == {-1.0, 1.0}
    assert bg.half_size(x).shape == (2, 1, 14, 14)
    shares = bg.pixel_shares(x)
    assert abs(sum(shares.values()) - 1.0) < 1e-6 and shares["faint"] > 0


def test_bench_giveaway_runs_on_a_model_and_its_test_part(monkeypatch, tmp_path, capsys):
    """In process, on a real apple dataset with a split and a model written like the trainer's (random weights,
    so the fakes are easy to tell apart as drawn); a fruit without a test part is one clear line."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import shutil

    import bench_giveaway
    from fruitgan.metrics import two_sample as ts
    from fruitgan.data import image_conversion
    from fruitgan.data import npz_packing
    from test_model_store import build_model

    shutil.copytree(ROOT / "rawData" / "sample", tmp_path / "rawData" / "sample")
    image_conversion.convert(dict(workdir=tmp_path, fruits=["apple", "pear"], resolution=28, count=1000,
                                  version="g", augment=False, workers=1, progress=False))
    npz_packing.pack(tmp_path, "g", progress=False, log=lambda _: None)
    build_model(tmp_path, "m", fruits=("apple", "pear"), dataset_version="g")
    monkeypatch.setattr(ts, "TWO_SAMPLE_MIN_STEPS", 20)
    monkeypatch.setattr(ts, "TWO_SAMPLE_MAX_STEPS", 20)
    assert bench_giveaway.main(["--workdir", str(tmp_path), "--model", "m", "--threads", "1"]) == 0
    out = capsys.readouterr().out
    rows = {ln.split("|")[1].strip(): ln.split("|") for ln in out.splitlines() if ln.startswith("| ")}
    assert set(bench_giveaway.CHANGES) <= set(rows) and {"real (test part)", "fakes"} <= set(rows)
    assert float(rows["as drawn"][2]) > 0.8          # untrained fakes: told apart even by a brief CNN
    assert "command: python benchmarks/bench_giveaway.py --workdir" in out
    with pytest.raises(UserError, match="no held-out test part"):
        bench_giveaway.main(["--workdir", str(tmp_path), "--model", "m", "--fruit", "pear"])


def test_gpu_check_stages_are_commands_the_scripts_accept(monkeypatch, capsys):
    """benchmarks/gpu_check.py cannot rot: every stage of the full (GPU) and tiny runs names test files that exist
    and flags and recipes its benchmark accepts (parsed by the benchmark's own parser). The stages themselves at
    tiny budgets are the bench_train/bench_quality tests above and tests/test_device_paths.py."""
    sys.path.insert(0, str(ROOT / "benchmarks"))
    import bench_quality
    import bench_train
    import gpu_check

    parsers = {"bench_train.py": bench_train.build_parser(), "bench_quality.py": bench_quality.build_parser()}
    for device, tiny in (("cuda", False), ("cpu", True)):
        for name, cmd, env in gpu_check.stages(device, tiny):
            script = next((c for c in cmd if c.endswith(".py") and "benchmarks" in c), None)
            if script is None:       # the pytest stage
                assert env == {"FRUITGAN_TEST_DEVICE": device}
                assert all((ROOT / c).is_file() for c in cmd if c.startswith("tests/"))
                continue
            args = cmd[cmd.index(script) + 1:]
            parsed = parsers[script.rsplit("/", 1)[1]].parse_args(args)    # argparse exits on an unknown flag
            assert not tiny or "--tiny" not in args
            if hasattr(parsed, "recipes"):
                assert set(parsed.recipes) <= set(bench_quality.RECIPES)
    ran = []
    monkeypatch.setattr(gpu_check, "run_stage", lambda cmd, env: ran.append(cmd) or (1 if len(ran) == 2 else 0))
    assert gpu_check.main(["--tiny", "--device", "cpu"]) == 1        # a failed stage fails the check
    out = capsys.readouterr().out
    assert len(ran) == len(gpu_check.stages("cpu", True)) and "bench_train: FAILED (exit 1)" in out
    ran.clear()
    import itertools
    clock = itertools.chain([0, 0, 0, 0], itertools.count(600, 600))  # the first stage ends at once, then 10 min
    monkeypatch.setattr(gpu_check.time, "perf_counter", lambda: next(clock))
    gpu_check.main(["--tiny", "--device", "cpu", "--budget-minutes", "5"])
    assert len(ran) == 1 and "not run (past --budget-minutes 5)" in capsys.readouterr().out

"""The benchmarks run end to end at tiny sizes and print consistent figures (no timing is asserted)."""
import re

from conftest import run_script


def _floats(line: str) -> list:
    return [float(x) for x in re.findall(r"\d+\.\d+", line)]


def test_bench_train_prints_both_methods_and_their_ratio():
    r = run_script("benchmarks/bench_train.py", "--sizes", "28", "--steps", "1", "--warmup", "0", "--rounds", "1",
                   "--batch", "4", "--threads", "1")
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SYNTHETIC data" in r.stdout
    row = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("28 "))
    ref, trainer, ratio = _floats(row)[:3]
    assert ref > 0 and trainer > 0
    assert abs(ratio - trainer / ref) <= 0.01 * ratio + 0.005   # the ratio is of the two printed rates


def test_bench_train_refuses_bad_sizes_in_one_line():
    r = run_script("benchmarks/bench_train.py", "--sizes", "abc")
    assert r.returncode == 2
    assert "Traceback" not in r.stderr and "--sizes" in r.stderr


def test_bench_convert_times_both_methods_on_the_same_drawings():
    r = run_script("benchmarks/bench_convert.py", "--lines", "200", "--workers", "2")
    assert r.returncode == 0, r.stdout + r.stderr
    rows = {ln.split("|")[1].strip(): ln for ln in r.stdout.splitlines() if ln.startswith("| ")}
    naive = next(v for k, v in rows.items() if k.startswith("naive"))
    project = next(v for k, v in rows.items() if k.startswith("rawDataToImage"))
    assert int(naive.split("|")[2]) == int(project.split("|")[2]) == 200   # same work on both sides
    ratio = next(v for k, v in rows.items() if k.startswith("ratio"))
    expected = float(project.split("|")[4]) / float(naive.split("|")[4])
    printed = float(ratio.split("|")[4].strip().rstrip("x"))
    assert abs(printed - expected) < 0.05 * expected + 0.01   # rates are printed rounded to whole drawings/s


def test_bench_quality_trains_each_recipe_and_prints_the_table():
    r = run_script("benchmarks/bench_quality.py", "--fruit", "pear", "--count", "30", "--epochs", "1",
                   "--recipes", "default,no_ema")
    assert r.returncode == 0, r.stderr
    assert "held-out split of the first 30 real drawings" in r.stdout
    lines = r.stdout.splitlines()
    top = next(i for i, line in enumerate(lines) if line.startswith("recipe"))
    assert lines[top].split()[:5] == ["recipe", "2-sample", "memo.", "recognised", "minutes"]
    assert [line.split()[0] for line in lines[top + 2:top + 4]] == ["default", "no_ema"]
    assert "not enough real drawings" in r.stdout        # pear's 40 drawings allow no held-out split


def test_bench_run_times_whole_runs_of_both_methods_and_their_parts():
    r = run_script("benchmarks/bench_run.py", "--sizes", "28", "--images", "8", "--epochs", "1", "--batch", "4",
                   "--eval-samples", "8", "--rounds", "1", "--threads", "1", timeout=600)
    assert r.returncode == 0, r.stdout + r.stderr
    assert "SYNTHETIC" in r.stdout
    row = next(ln for ln in r.stdout.splitlines() if ln.strip().startswith("28 "))
    ref, trainer, ratio = _floats(row)[:3]
    assert ref > 0 and trainer > 0
    assert abs(ratio - ref / trainer) <= 0.01 * ratio + 0.006   # the speed-up is of the two printed times
    detail = next(ln for ln in r.stdout.splitlines() if "trainer detail" in ln)
    for part in ("steps", "checkpoints", "evaluation", "milestone_images", "history_writes", "other"):
        assert f"{part} " in detail

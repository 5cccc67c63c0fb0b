"""Cost analysis: the arithmetic (checked against the formula computed here independently), the equal
split of a segment among its fruits, resumed totals, the files written, the background sampler and
the pricing file's errors. Time and memory are injected (a fake clock, scripted memory readings), so
nothing here depends on how fast the machine is."""
import json
import threading

import pytest

import cost_analysis_training as cat
from fruitgan.learn import cost_report, memory
from fruitgan.learn import pricing as prices
from fruitgan.models.folder import ModelFolder
from fruitgan.util.user_io import UserError

GIB = 1024 ** 3
# The shipped prices, as the mission states them (independent of the module's loader).
CPU_PRICE = 19 / 64  # 0.296875 per CPU per month
RAM_PRICE = 19 / 512  # 0.037109375 per GB per month
STORAGE_PRICE = 0.10
MONTH_HOURS = 720  # 30 days x 24 h


class FakeClock:
    """A clock that only moves when the test says so."""

    def __init__(self, start=1000.0):
        self.now = start

    def __call__(self):
        return self.now

    def advance(self, seconds):
        self.now += seconds


class ScriptedReader:
    """Returns the given readings in order, then repeats the last one; counts calls."""

    def __init__(self, values):
        self.values = list(values)
        self.calls = 0

    def __call__(self):
        value = self.values[min(self.calls, len(self.values) - 1)]
        self.calls += 1
        return value


@pytest.fixture
def pricing():
    return prices.load_pricing(prices.DEFAULT_PRICING_PATH)


def make_tracker(pricing, clock, reader, cpus=2, gpu=lambda: 0):
    return cat.CostTracker(pricing, clock=clock, memory_reader=reader, gpu_memory_reader=gpu,
                           cpus=cpus, background=False)


def expected_costs(cpus, ram_gb, hours):
    compute = CPU_PRICE * cpus / MONTH_HOURS * hours
    memory = RAM_PRICE * ram_gb / MONTH_HOURS * hours
    return compute, memory


# ------------------------------------------------------------------------------------------- pricing


def test_shipped_pricing_file_has_the_mission_values(pricing):
    assert pricing.fixed_monthly_cost == 19.0
    assert pricing.cost_per_cpu_per_month == CPU_PRICE
    assert pricing.cost_per_gb_ram_per_month == RAM_PRICE
    assert pricing.additional_storage_cost_per_gb == STORAGE_PRICE
    assert prices.HOURS_PER_MONTH == MONTH_HOURS


def write_pricing(tmp_path, **changes):
    data = {"fixed_monthly_cost": 19.0, "cost_per_cpu_per_month": 0.296875,
            "cost_per_gb_ram_per_month": 0.037109375, "additional_storage_cost_per_gb": 0.10,
            "my_note": "kept"}
    data.update(changes)
    data = {k: v for k, v in data.items() if v is not DELETE}
    path = tmp_path / "pricing.json"
    path.write_text(json.dumps(data))
    return path


DELETE = object()


def test_extra_keys_are_kept(tmp_path):
    loaded = prices.load_pricing(write_pricing(tmp_path))
    assert loaded.extra == {"my_note": "kept"}
    assert loaded.to_dict()["my_note"] == "kept"
    assert loaded.source == str(tmp_path / "pricing.json")


@pytest.mark.parametrize("key", prices.PRICING_KEYS)
@pytest.mark.parametrize("bad, words", [(DELETE, "missing"), (-0.5, "negative"), ("0.1", "number"),
                                        (True, "number"), (None, "number"), (float("nan"), "finite")])
def test_bad_pricing_value_names_key_and_file(tmp_path, key, bad, words):
    path = write_pricing(tmp_path, **{key: bad})
    with pytest.raises(UserError) as err:
        prices.load_pricing(path)
    message = str(err.value)
    assert key in message and str(path) in message and words in message
    assert "\n" not in message


def test_missing_and_invalid_pricing_files(tmp_path):
    with pytest.raises(UserError, match="not found") as err:
        prices.load_pricing(tmp_path / "nope.json")
    assert "nope.json" in str(err.value)
    broken = tmp_path / "broken.json"
    broken.write_text('{"fixed_monthly_cost": 19.0,')
    with pytest.raises(UserError, match="not valid JSON"):
        prices.load_pricing(broken)
    listed = tmp_path / "list.json"
    listed.write_text("[1, 2]")
    with pytest.raises(UserError, match="JSON object"):
        prices.load_pricing(listed)


def test_cli_reports_a_bad_pricing_file_in_one_line(tmp_path, capsys):
    path = write_pricing(tmp_path, cost_per_cpu_per_month=-1)
    assert cat.run_main(cat.main, ["--pricing", str(path), "--cpus", "2"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error:") and "cost_per_cpu_per_month" in err and len(err.splitlines()) == 1


# ---------------------------------------------------------------------------------------- arithmetic


def test_single_fruit_cost_matches_formula(pricing):
    clock = FakeClock()
    tracker = make_tracker(pricing, clock, ScriptedReader([1 * GIB, 2 * GIB, int(1.5 * GIB)]), cpus=2)
    tracker.begin(["apple"])
    clock.advance(7 * 1800.0)  # 7 epochs of half an hour = 3.5 h
    section = tracker.end(["apple"], {"apple": 7})["apple"]

    compute, memory = expected_costs(cpus=2, ram_gb=2, hours=3.5)
    total = compute + memory
    assert section["training_time_seconds"] == 12600.0
    assert section["training_time_hours"] == 3.5
    assert section["training_time_minutes"] == 210.0
    assert section["epochs"] == 7
    assert section["time_per_epoch_seconds"] == 1800.0
    assert section["peak_memory_bytes"] == 2 * GIB
    assert section["peak_memory_gb"] == 2.0
    assert section["ram_gb_charged"] == 2.0 and section["cpus_charged"] == 2.0
    assert section["currency"] == "USD"
    cost = section["cost"]
    assert cost["compute"] == pytest.approx(compute, rel=1e-12)
    assert cost["memory"] == pytest.approx(memory, rel=1e-12)
    assert cost["total"] == pytest.approx(total, rel=1e-12)
    assert cost["per_epoch"] == pytest.approx(total / 7, rel=1e-12)
    assert cost["per_hour"] == pytest.approx((CPU_PRICE * 2 + RAM_PRICE * 2) / MONTH_HOURS, rel=1e-12)
    # By hand: (0.296875 x 2 + 0.037109375 x 2) x 3.5 / 720 = 2.337890625 / 720 = $0.00324707...
    assert cost["total"] == pytest.approx(0.0032470703, rel=1e-8)


def test_segment_is_split_equally_between_its_fruits(pricing):
    clock = FakeClock()
    tracker = make_tracker(pricing, clock, ScriptedReader([3 * GIB]), cpus=4)
    fruits = ["apple", "banana", "grapes"]
    tracker.begin(fruits)
    clock.advance(3 * 3600.0)  # 3 hours for the whole group
    sections = tracker.end(fruits, {"apple": 10, "banana": 10, "grapes": 5})

    compute, memory = expected_costs(cpus=4, ram_gb=3, hours=1.0)  # each fruit gets 1 of the 3 hours
    for fruit in fruits:
        s = sections[fruit]
        assert s["training_time_hours"] == 1.0
        assert s["peak_memory_gb"] == 3.0
        assert s["cost"]["compute"] == pytest.approx(compute, rel=1e-12)
        assert s["cost"]["memory"] == pytest.approx(memory, rel=1e-12)
    assert sections["grapes"]["cost"]["per_epoch"] == pytest.approx((compute + memory) / 5, rel=1e-12)
    assert sections["apple"]["cost"]["per_epoch"] == pytest.approx((compute + memory) / 10, rel=1e-12)
    # Together the fruits cost exactly what the machine cost for the 3 hours.
    whole = sum(expected_costs(cpus=4, ram_gb=3, hours=3.0))
    assert sum(s["cost"]["total"] for s in sections.values()) == pytest.approx(whole, rel=1e-12)


def test_resumed_run_adds_to_previous_totals(pricing):
    clock = FakeClock()
    first = make_tracker(pricing, clock, ScriptedReader([2 * GIB]), cpus=2)
    first.begin(["apple", "pear"])
    clock.advance(2 * 3600.0)
    old = first.end(["apple", "pear"], {"apple": 4, "pear": 4})
    # The history file stores the section under "cost"; it comes back through JSON.
    stored = json.loads(json.dumps(cost_report.cost_fields_for_history(old["apple"])))["cost"]

    second = make_tracker(pricing, clock, ScriptedReader([1 * GIB]), cpus=2)
    second.begin(["apple"], previous={"apple": stored})
    clock.advance(0.5 * 3600.0)
    new = second.end(["apple"], {"apple": 3})["apple"]

    old_compute, _ = expected_costs(cpus=2, ram_gb=2, hours=1.0)  # half of 2 h shared with pear
    new_compute, _ = expected_costs(cpus=2, ram_gb=1, hours=0.5)
    _, memory = expected_costs(cpus=2, ram_gb=2, hours=1.5)       # one figure: the peak shown, all the hours
    assert new["training_time_hours"] == 1.5
    assert new["epochs"] == 7
    assert new["peak_memory_gb"] == new["ram_gb_charged"] == 2.0  # the larger peak of the two runs
    assert new["segments"] == 2
    assert new["cost"]["compute"] == pytest.approx(old_compute + new_compute, rel=1e-12)
    assert new["cost"]["memory"] == pytest.approx(memory, rel=1e-12)
    total = old_compute + new_compute + memory
    assert new["cost"]["total"] == pytest.approx(total, rel=1e-12)
    assert new["cost"]["per_epoch"] == pytest.approx(total / 7, rel=1e-12)
    assert new["cost"]["per_hour"] == pytest.approx(total / 1.5, rel=1e-12)


def test_memory_is_charged_at_the_peak_it_shows_over_every_epoch(pricing):
    """The trainer measures each epoch as a segment; a milestone epoch peaks higher. The record shows one peak
    and charges that peak for all the hours (not each epoch's own, lower, peak)."""
    clock = FakeClock()
    section = None
    for peak_gb in (1, 4, 1):                        # the middle epoch evaluates: a higher peak
        tracker = make_tracker(pricing, clock, ScriptedReader([peak_gb * GIB]), cpus=2)
        tracker.begin(["apple"], previous={"apple": section})
        clock.advance(3600.0)
        section = tracker.end(["apple"], {"apple": 1})["apple"]
    compute, memory = expected_costs(cpus=2, ram_gb=4, hours=3.0)
    assert section["peak_memory_gb"] == section["ram_gb_charged"] == 4.0
    assert section["cost"]["memory"] == pytest.approx(memory, rel=1e-12)
    assert section["cost"]["compute"] == pytest.approx(compute, rel=1e-12)


def test_broken_previous_record_is_a_user_error(pricing):
    clock = FakeClock()
    tracker = make_tracker(pricing, clock, ScriptedReader([GIB]))
    tracker.begin(["apple"], previous={"apple": {"training_time_seconds": "lots", "cost": {}}})
    clock.advance(10)
    with pytest.raises(UserError, match="apple"):
        tracker.end(["apple"], {"apple": 1})


def test_gpu_peak_is_reported_not_charged(pricing):
    clock = FakeClock()
    tracker = make_tracker(pricing, clock, ScriptedReader([GIB]), cpus=1, gpu=ScriptedReader([5, 7 * GIB, 6]))
    tracker.begin(["apple"])  # the GPU peak is read at begin and at end
    clock.advance(3600.0)
    s = tracker.end(["apple"], {"apple": 1})["apple"]
    assert s["peak_gpu_memory_bytes"] == 7 * GIB
    assert s["cost"]["total"] == pytest.approx(sum(expected_costs(cpus=1, ram_gb=1, hours=1.0)), rel=1e-12)


def test_measured_cpus_when_not_configured(pricing):
    import torch

    tracker = cat.CostTracker(pricing, clock=FakeClock(), memory_reader=lambda: GIB,
                              gpu_memory_reader=lambda: 0, background=False)
    tracker.begin(["apple"])
    s = tracker.end(["apple"], {"apple": 0})["apple"]
    assert s["cpus_charged"] == min(torch.get_num_threads(), memory.available_cpus())
    assert s["cost"]["per_epoch"] == 0.0  # no epochs: no division by zero


# ------------------------------------------------------------------------------------------ sampler


class SpikingReader:
    """1 GB, except 9 GB while ``spiking`` is set (a short allocation burst inside an epoch)."""

    def __init__(self):
        self.spiking = threading.Event()
        self.spike_read = threading.Event()
        self.calls = 0

    def __call__(self):
        self.calls += 1
        if self.spiking.is_set():
            self.spike_read.set()
            return 9 * GIB
        return 1 * GIB


def test_background_sampler_catches_a_peak_between_readings(pricing):
    reader = SpikingReader()
    clock = FakeClock()
    tracker = cat.CostTracker(pricing, clock=clock, memory_reader=reader, gpu_memory_reader=lambda: 0,
                              cpus=1, sample_interval_s=0.01, background=True)
    tracker.begin(["apple"])
    # The test itself reads nothing during the burst: only the background thread can see it.
    reader.spiking.set()
    assert reader.spike_read.wait(5.0)
    reader.spiking.clear()
    clock.advance(3600.0)
    s = tracker.end(["apple"], {"apple": 1})["apple"]
    assert s["peak_memory_bytes"] == 9 * GIB
    assert not any(t.name == "memory-sampler" and t.is_alive() for t in threading.enumerate())


def test_without_background_a_burst_between_readings_is_missed(pricing):
    reader = SpikingReader()
    clock = FakeClock()
    tracker = make_tracker(pricing, clock, reader)
    tracker.begin(["apple"])
    reader.spiking.set()
    threading.Event().wait(0.05)  # the burst lasts 50 ms with nobody reading
    reader.spiking.clear()
    s = tracker.end(["apple"], {"apple": 1})["apple"]
    assert reader.calls == 2  # begin and end only
    assert s["peak_memory_bytes"] == 1 * GIB


def test_memory_sampler_context_manager_with_real_rss():
    import mmap

    block_size = 64 * 1024 * 1024
    with memory.MemorySampler(interval_s=0.01) as sampler:
        assert sampler.running
        baseline = memory.process_rss_bytes()
        # A fresh mapping, written, so its pages really become resident (a malloc'd block may reuse pages that
        # earlier tests freed, and then RSS does not grow).
        block = mmap.mmap(-1, block_size)
        block.write(b"\x01" * block_size)
        sampler.sample()
        block.close()
    assert not sampler.running
    assert sampler.peak_bytes >= baseline + block_size * 3 // 4
    assert sampler.samples >= 2


# -------------------------------------------------------------------------------------------- output


def test_console_summary_block(pricing):
    clock = FakeClock()
    tracker = make_tracker(pricing, clock, ScriptedReader([int(1.23 * GIB)]), cpus=2)
    tracker.begin(["apple"])
    clock.advance(192.0)  # 3.2 minutes
    s = tracker.end(["apple"], {"apple": 4})["apple"]
    lines = cost_report.format_cost_summary("apple", s).splitlines()
    assert lines[0] == lines[2] == lines[-1] == "=" * 58
    assert lines[1] == "TRAINING COST SUMMARY FOR APPLE"
    assert lines[3] == "Training time: 0.05 hours (3.2 minutes)"
    assert lines[4] == "Peak memory: 1.23 GB"
    assert lines[5] == f"Total cost: {prices.format_money(s['cost']['total'])}"
    assert lines[6].startswith("Cost per epoch: $0.0000")
    assert lines[7].startswith("Cost per hour: $0.000")


@pytest.mark.parametrize("value, text", [(0.000123, "$0.000123"), (0.0000012, "$0.0000012"),
                                         (0.00021, "$0.00021"), (12.3, "$12.30"), (0.0, "$0.00")])
def test_money_format(value, text):
    assert prices.format_money(value) == text


def two_fruit_run(pricing):
    clock = FakeClock()
    tracker = make_tracker(pricing, clock, ScriptedReader([2 * GIB]), cpus=2)
    tracker.begin(["apple", "banana"])
    clock.advance(7 * 3600.0)  # 3.5 h each
    return tracker.end(["apple", "banana"], {"apple": 10, "banana": 10})


def test_cost_report_contents(pricing, tmp_path):
    sections = two_fruit_run(pricing)
    kept = {"networks": 3000, "best": 1000}          # what the folder holds, measured by the caller
    report = cost_report.build_cost_report(sections, kept, tmp_path / "model_x", {"resolution": 28, "lr": 2e-4},
                                           pricing)

    for key in ("breakdown", "totals", "cost_per_epoch", "peak_memory_gb", "training_hours", "per_fruit",
                "pricing", "formula", "model_config", "cost_per_fruit"):
        assert key in report
    compute, memory = expected_costs(cpus=2, ram_gb=2, hours=7.0)
    storage = 4000 / GIB * STORAGE_PRICE
    assert report["breakdown"]["storage"]["size_bytes"] == 4000 and report["breakdown"]["storage"]["parts"] == kept
    assert report["breakdown"]["storage"]["cost"] == pytest.approx(storage, rel=1e-12)
    assert report["totals"]["compute"] == pytest.approx(compute, rel=1e-12)
    assert report["totals"]["memory"] == pytest.approx(memory, rel=1e-12)
    assert report["totals"]["total"] == pytest.approx(compute + memory + storage, rel=1e-12)
    assert report["cost_per_epoch"] == pytest.approx((compute + memory) / 20, rel=1e-12)
    assert report["cost_per_fruit"] == pytest.approx((compute + memory + storage) / 2, rel=1e-12)
    assert report["training_hours"] == 7.0
    assert report["peak_memory_gb"] == 2.0
    assert report["breakdown"]["fixed_monthly_cost"] == {**report["breakdown"]["fixed_monthly_cost"],
                                                         "amount": 19.0, "added": False}
    assert report["pricing"]["cost_per_cpu_per_month"] == CPU_PRICE
    assert "720" in report["formula"]
    assert report["model_config"] == {"resolution": 28, "lr": 2e-4}
    assert set(report["per_fruit"]) == {"apple", "banana"}
    json.dumps(report)  # must be writable as JSON


def test_description_file(pricing, tmp_path):
    sections = two_fruit_run(pricing)
    kept = {"resume state": 3 * 1024 ** 2, "networks": 1024 ** 2, "best": 0}
    report = cost_report.build_cost_report(sections, kept, tmp_path, {}, pricing)
    text = cost_report.description_text(
        "Doodle fruits, small test.",
        {"version": "v1", "resolution": 28, "fruits": ["apple", "banana"],
         "image_counts": {"apple": 120, "banana": 80}},
        {"epochs": 10, "batch_size": 32, "lr": 0.0002, "gan_config": {"g_channels": 128}},
        sections, report)
    path = ModelFolder(tmp_path, "x").write_description(text)     # model_store writes info/description.txt
    assert path == tmp_path / "info" / "description.txt"
    text = path.read_text()
    lines = text.splitlines()
    assert lines[2] == "Doodle fruits, small test."
    assert "Resolution: 28x28 pixels" in lines
    assert "Fruits: apple, banana" in lines
    assert "  apple: 120" in lines and "  banana: 80" in lines
    assert "Epochs: 10" in lines and "Batch size: 32" in lines and "Learning rate: 0.0002" in lines
    assert "Gan config:" in lines and "  G channels: 128" in lines  # nested settings indented
    assert "Total training time: 7.00 hours (420.0 minutes)" in lines
    assert "Average time per fruit: 3.50 hours (210.0 minutes)" in lines
    assert "Peak memory: 2.00 GB" in lines
    money, totals = prices.format_money, report["totals"]
    # Training (compute + memory over the training hours) and storage (one month of the kept folder) apart,
    # each saying what it includes; the total says it adds the two.
    training = next(l for l in lines if l.startswith("Training cost: "))
    assert training.startswith(f"Training cost: {money(totals['training'])} (compute {money(totals['compute'])} "
                               f"+ memory {money(totals['memory'])}") and "7.00 training hours" in training
    storage = next(l for l in lines if l.startswith("Storage cost: "))
    assert storage.startswith(f"Storage cost: {money(totals['storage'])} (one month of the model folder")
    assert "4.00 MB" in storage and "resume state 3.00 MB" in storage and "networks 1.00 MB" in storage
    assert "best" not in storage                                   # an empty part is not listed
    assert (f"Total cost: {money(totals['total'])} (training {money(totals['training'])} + one month of storage "
            f"{money(totals['storage'])})") in lines
    assert totals["total"] == pytest.approx(totals["training"] + 4 * 1024 ** 2 / GIB * STORAGE_PRICE, rel=1e-12)
    assert f"Average training cost per fruit: {money(totals['training'] / 2)}" in lines
    assert any(l.startswith(f"Average training cost per epoch: {money(report['cost_per_epoch'])}") for l in lines)
    assert any("Fixed monthly cost" in l and "not added" in l for l in lines)
    assert "HOURS_PER_MONTH = 720" in text and "cost_per_cpu_per_month" in text
    assert not list((tmp_path / "info").glob("*.tmp"))  # atomic write left no temp file


def test_history_fields(pricing):
    section = two_fruit_run(pricing)["apple"]
    fields = cost_report.cost_fields_for_history(section)
    assert fields["cost_summary"]["total"] == section["cost"]["total"]
    assert fields["cost_summary"]["per_epoch"] == section["cost"]["per_epoch"]
    assert fields["cost_summary"]["per_hour"] == section["cost"]["per_hour"]
    assert fields["training_time_seconds"] == 3.5 * 3600
    assert fields["training_time_hours"] == 3.5
    assert fields["peak_memory_gb"] == 2.0
    assert fields["cost"] == section and fields["cost"] is not section


def test_module_docstring_states_the_formula():
    doc = cat.__doc__
    assert "HOURS_PER_MONTH = 720" in doc
    assert "peak" in doc.lower() and "RSS" in doc
    assert "NOT added" in doc

"""spot_the_fake.py: the server driven through real HTTP requests from start to end, the terminal fallback, the
scoring against hand-computed cases and the kept record. Models: test_model_store.build_model (real networks,
random weights) on the tiny real dataset (12 drawings per fruit, no held-out split)."""
import http.client
import io
import json
import os
import queue
import re
import signal
import socket
import subprocess
import sys
import threading

import numpy as np
import pytest
from PIL import Image

from conftest import ROOT, TINY_VERSION, run_script
from test_model_store import build_model
from fruitgan.people import results
from fruitgan.people.session import FAKE, REAL, build_session, comparison, png_bytes, result_lines, score
from fruitgan.people.server import MAX_BODY

TIMEOUT = 60          # seconds: every request, every wait on the script
NUM = 4               # real drawings (and fakes) in the scored round; 2 + 2 more for practice


@pytest.fixture
def model(tiny_workdir):
    build_model(tiny_workdir, "t", fruits=("apple", "pear"), dataset_version=TINY_VERSION)
    return tiny_workdir


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Script:
    """spot_the_fake.py --no-browser in the background; its stdout lines on a queue."""

    def __init__(self, workdir, *args):
        env = dict(os.environ, PYTHONUNBUFFERED="1", MPLBACKEND="Agg")
        env.pop("DISPLAY", None)
        self.proc = subprocess.Popen([sys.executable, str(ROOT / "spot_the_fake.py"), "t", "pear", "--workdir",
                                      str(workdir), "--yes", "--no-browser", "--seed", "5", "--num-images", str(NUM),
                                      *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, stdin=subprocess.DEVNULL,
                                     text=True, cwd=ROOT, env=env)
        self.lines = queue.Queue()
        self.seen = []
        self.reader = threading.Thread(target=lambda: [self.lines.put(x) for x in self.proc.stdout], daemon=True)
        self.reader.start()
        self.port = int(self.wait_for(r"http://127\.0\.0\.1:(\d+)/").group(1))

    def wait_for(self, pattern):
        while True:
            try:
                line = self.lines.get(timeout=TIMEOUT)
            except queue.Empty:
                raise AssertionError(f"no line matching {pattern!r}; saw {self.seen}; stderr "
                                     f"{self.proc.stderr.read() if self.proc.poll() is not None else ''}") from None
            self.seen.append(line)
            if (found := re.search(pattern, line)):
                return found

    def output(self):
        """Every stdout line, once the script has ended."""
        self.reader.join(timeout=TIMEOUT)
        while not self.lines.empty():
            self.seen.append(self.lines.get())
        return self.seen

    def request(self, method, path, body=None, headers=None):
        conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=TIMEOUT)
        try:
            data = json.dumps(body).encode() if isinstance(body, dict) else body
            conn.request(method, path, body=data, headers=headers or {})
            reply = conn.getresponse()
            return reply.status, reply.getheader("Content-Type"), reply.read()
        finally:
            conn.close()

    def post(self, path, body):
        status, _, data = self.request("POST", path, body)
        return status, json.loads(data)

    def stop(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(timeout=TIMEOUT)


def stored_pears(workdir) -> set:
    import data_loader
    ds = data_loader.load_fruit(workdir, TINY_VERSION, "pear")
    return {bytes(x) for x in ds.pixels[ds.real_index].numpy()}


def refusals_of_bad_input(script, token, practice_id, scored_id) -> int:
    """Every kind of bad input gets its 4xx; returns how many were sent."""
    bad = [("GET", "/../spot_the_fake.py", None, {}, 400), ("GET", "/%2e%2e/%2E%2E/etc/passwd", None, {}, 400),
           ("GET", "/img/..%2fpage.js", None, {}, 400), ("GET", "/img/ffffffffffff.png", None, {}, 404),
           ("GET", "/spot_the_fake.py", None, {}, 404), ("POST", "/api/answer", b"{not json", {}, 400),
           ("POST", "/api/answer", b"x" * (MAX_BODY + 1), {}, 413), ("POST", "/api/answer", b"[1]", {}, 400),
           ("POST", "/api/start", {}, {}, 409),                                                 # a second page
           ("POST", "/api/answer", {"token": "0" * 32, "id": practice_id, "answer": REAL}, {}, 403),  # another session
           ("POST", "/api/answer", {"token": token, "id": "ffffffffffff", "answer": REAL}, {}, 404),   # never shown
           ("POST", "/api/answer", {"token": token, "id": scored_id, "answer": REAL}, {}, 409),        # not yet shown
           ("POST", "/api/answer", {"token": token, "id": practice_id, "answer": "maybe"}, {}, 400)]
    for method, path, body, headers, code in bad:
        status, _, _ = script.request(method, path, body, headers)
        assert status == code, (method, path, status)
    return len(bad)


def test_a_whole_session_over_http(model):
    """Page, images, answers, refusals, record and scores, through real requests to the running script."""
    folder, reals = model / "models" / "model_t", stored_pears(model)
    script = Script(model, "--port", str(free_port()))
    try:
        for path, kind in (("/", "text/html"), ("/page.js", "text/javascript"), ("/page.css", "text/css")):
            status, got, body = script.request("GET", path)
            assert status == 200 and got.startswith(kind) and body and b"http" not in body     # works offline
        status, started = script.post("/api/start", {})
        assert status == 200 and "the drawings the model trained on" in started["about"]
        practice, scored = started["practice"], started["scored"]
        assert len(practice) == 4 and len(scored) == 2 * NUM and len(set(practice + scored)) == 4 + 2 * NUM
        assert all(re.fullmatch(r"[0-9a-f]{12}", i) for i in practice + scored)
        bad = refusals_of_bad_input(script, started["token"], practice[0], scored[0])
        truth = {}
        for image_id in practice + scored:
            status, kind, png = script.request("GET", f"/img/{image_id}.png")
            picture = Image.open(io.BytesIO(png))
            assert status == 200 and kind == "image/png" and picture.mode == "L" and picture.size == (28, 28)
            truth[image_id] = REAL if np.asarray(picture).tobytes() in reals else FAKE
        assert [truth[i] for i in scored].count(REAL) == NUM and [truth[i] for i in practice].count(REAL) == 2
        status, reply = script.post("/api/answer", {"token": started["token"], "id": practice[0], "answer": REAL})
        assert status == 200 and reply == {"truth": truth[practice[0]]}                  # practice: feedback
        first_fake = next(i for i in scored if truth[i] == FAKE)
        answers = {i: REAL if truth[i] == REAL or i == first_fake else FAKE for i in scored}   # 7 of 8 right
        for n, image_id in enumerate(scored):
            assert not results.human_test_path(folder, "pear").exists()                  # nothing kept before the end
            status, reply = script.post("/api/answer", {"token": started["token"], "id": image_id,
                                                        "answer": answers[image_id]})
            assert status == 200 and "truth" not in reply                                # the scored round: no feedback
            if n == 0:
                assert script.post("/api/answer", {"token": started["token"], "id": image_id, "answer": FAKE})[0] == 409
                bad += 1
        assert reply["results"]["accuracy"] == 7 / 8
        assert "You judged 7 of 8 right: 0.88" in reply["results"]["lines"][0]
        assert ("Fakes taken for real: 1 of 4 (25%); real drawings taken for fake: 0 of 4 (0%)"
                in reply["results"]["lines"][1])
        assert script.proc.wait(timeout=TIMEOUT) == 0                                    # the server stops at the end
        out = script.output()
    finally:
        script.stop()
    assert sum(line.startswith("refused") for line in out) == bad                       # one console line each
    assert "Traceback" not in script.proc.stderr.read()
    [record] = results.read_sessions(folder, "pear")
    assert record["seed"] == 5 and record["practice_answered"] == 1 and record["model"] == "t"
    assert [(i["id"], i["truth"], i["answer"]) for i in record["images"]] == [(i, truth[i], answers[i]) for i in scored]
    assert all(isinstance(i["seconds"], float) for i in record["images"])
    pooled = results.pooled_human_figure(folder, "pear")
    assert pooled["sessions"] == 1 and pooled["judged"] == 8 and pooled["accuracy"] == 7 / 8
    assert pooled["low"] == pytest.approx(0.529, abs=1e-3) and pooled["high"] == pytest.approx(0.978, abs=1e-3)


def test_a_port_in_use_moves_on_and_ctrl_c_keeps_nothing(model):
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        script = Script(model, "--port", str(port))
        try:
            assert script.port != port and script.request("GET", "/")[0] == 200
            script.proc.send_signal(signal.SIGINT)
            assert script.proc.wait(timeout=TIMEOUT) == 130
        finally:
            script.stop()
    assert "not kept" in script.proc.stderr.read()
    assert not results.human_test_path(model / "models" / "model_t", "pear").exists()
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", script.port), timeout=TIMEOUT).close()   # the server has stopped


def test_terminal_fallback_without_a_display(model):
    """No display: a numbered grid PNG and typed answers; Enter alone and a wrong line are asked again."""
    typed = "rf\nfr\n\nrx\nrrf\nffr\nrf\n"      # practice: 2 rows of 2; scored: rows of 3, 3, 2
    r = run_script("spot_the_fake.py", "t", "pear", "--workdir", str(model), "--yes", "--seed", "5",
                   "--num-images", str(NUM), input=typed, timeout=300)
    assert r.returncode == 0, r.stderr
    assert "No browser can open here" in r.stdout and "invalid answer" in r.stdout
    assert re.search(r"1: (right|wrong), (real|fake); 2:", r.stdout)                   # practice feedback
    grids = sorted((model / "outputs").glob("spot_the_fake_t_pear_seed5_*.png"))
    assert [g.stem.rsplit("_", 1)[1] for g in grids] == ["practice", "scored"]
    assert Image.open(grids[1]).size[1] > 3 * 64                                         # 3 rows of enlarged tiles
    [record] = results.read_sessions(model / "models" / "model_t", "pear")
    assert "".join(i["answer"][0] for i in record["images"]) == "rrfffrrf" and record["mode"] == "terminal"
    judged = score([(i["truth"], i["answer"]) for i in record["images"]])
    assert f"You judged {judged['right']} of 8 right" in r.stdout


def test_end_of_input_midway_keeps_nothing(model):
    r = run_script("spot_the_fake.py", "t", "pear", "--workdir", str(model), "--yes", "--terminal",
                   "--num-images", str(NUM), input="rf\nfr\nrrf\n", timeout=300)
    assert r.returncode == 2 and r.stderr.strip().count("\n") == 0 and "not kept" in r.stderr
    assert not results.human_test_path(model / "models" / "model_t", "pear").exists()


@pytest.mark.parametrize("args, message", [
    (["nope", "pear"], "no model 'nope'"),
    (["t", "kiwi"], "has no 'kiwi' generator"),
    (["t", "pear", "--num-images", "11"], "only 12 real pear drawings"),
    (["t", "pear", "--terminal", "--no-browser"], "give one of them"),
    (["t", "pear", "--checkpoint", "nope"], "checkpoints of t pear: latest, best, 2, 4"),
])
def test_bad_input_is_one_line(model, args, message, capsys):
    """Through the script's main() and run_main in this process (the message is under test, not a start of torch;
    the whole script as a user starts it is the tests above)."""
    import spot_the_fake
    from fruitgan.util.user_io import run_main

    capsys.readouterr()
    code = run_main(spot_the_fake.main, [*args, "--workdir", str(model), "--yes"])
    out, err = capsys.readouterr()
    assert code == 2 and message in err and err.strip().count("\n") == 0, err


def test_scoring_by_hand():
    pairs = [(REAL, REAL)] * 3 + [(REAL, FAKE)] + [(FAKE, FAKE)] * 2 + [(FAKE, REAL)] * 2
    s = score(pairs)
    assert (s["right"], s["judged"], s["accuracy"]) == (5, 8, 0.625)
    assert (s["fake_error"], s["real_error"]) == (0.5, 0.25)
    # Wilson, z = 1.96: centre (0.625 + 0.2401) / 1.4802 = 0.5844, half 1.96 * 0.21048 / 1.4802 = 0.2787
    assert s["low"] == pytest.approx(0.3057, abs=1e-3) and s["high"] == pytest.approx(0.8632, abs=1e-3)
    assert score([(FAKE, REAL)] * 4)["accuracy"] == 0.0 and score([(FAKE, REAL)] * 4)["real_error"] is None


def record_of(pairs):
    return {"seed": 1, "images": [{"id": str(k), "truth": t, "answer": a} for k, (t, a) in enumerate(pairs)]}


def test_pooled_figure_bootstraps_over_sessions(tmp_path):
    assert results.pooled_human_figure(tmp_path, "apple") is None                      # no session: no figure
    five_of_eight = [(REAL, REAL)] * 3 + [(REAL, FAKE)] + [(FAKE, FAKE)] * 2 + [(FAKE, REAL)] * 2
    results.append_session(tmp_path, "apple", record_of(five_of_eight))
    path = results.human_test_path(tmp_path, "apple")
    assert path == tmp_path / "info" / "human_test_apple.jsonl"
    with open(path, "a") as fh:
        fh.write('{"half a line\n')                                                       # damaged: skipped
    results.append_session(tmp_path, "apple", record_of([(REAL, REAL)] * 4 + [(FAKE, FAKE)] * 4))
    pooled = results.pooled_human_figure(tmp_path, "apple")
    # Resampling two sessions: both the 5/8 one (10/16), one of each (13/16) or both 8/8; each extreme a quarter
    # of the draws, so the 2.5% and 97.5% points are the extremes.
    assert pooled == {"sessions": 2, "judged": 16, "accuracy": 13 / 16, "low": 0.625, "high": 1.0}
    assert results.pooled_human_figure(tmp_path, "apple") == pooled                     # seeded: repeatable
    assert len(path.read_text().splitlines()) == 3


def test_real_and_fake_take_the_same_road():
    rng = np.random.default_rng(0)
    reals, fakes = (rng.integers(0, 256, (6, 28, 28), dtype=np.uint8) for _ in range(2))
    one, two = build_session(reals, fakes, seed=3), build_session(reals, fakes, seed=3)
    assert [s.truth for s in one.images] == [s.truth for s in two.images]              # the seed sets the order
    assert {s.id for s in one.images}.isdisjoint(s.id for s in two.images)              # ids are random
    assert [s.truth for s in build_session(reals, fakes, seed=4).images] != [s.truth for s in one.images]
    for s in one.images:
        picture = Image.open(io.BytesIO(s.png))
        source = reals if s.truth == REAL else fakes
        assert picture.mode == "L" and np.array_equal(np.asarray(picture), source[s.drawing])
        assert s.png[:33] == png_bytes(reals[0])[:33]                                   # same signature and header
    assert len(one.round(practice=True)) == 4 and len(one.round(practice=False)) == 8


@pytest.mark.parametrize("machine, says", [
    ({"two_sample_accuracy": 0.60, "two_sample_low": 0.50, "two_sample_high": 0.70}, "intervals overlap"),
    ({"two_sample_accuracy": 0.95, "two_sample_low": 0.92, "two_sample_high": 0.98}, "The machine tells them apart"),
    ({"two_sample_accuracy": 0.50, "two_sample_low": 0.45, "two_sample_high": 0.55}, "You told them apart better"),
    ({"two_sample_accuracy": None, "two_sample_note": "not enough real drawings"}, "not enough real drawings"),
])
def test_one_plain_sentence_beside_the_machines_figure(machine, says):
    """A person at 0.70 (0.6-0.8 by hand, not Wilson's) beside machines that overlap, beat them or lose."""
    person = {"accuracy": 0.70, "low": 0.60, "high": 0.80}
    assert says in comparison(person, machine)
    lines = result_lines({**score([(REAL, REAL)] * 7 + [(FAKE, REAL)] * 3), **person}, machine, None)
    assert lines[1] == "Fakes taken for real: 3 of 3 (100%); real drawings taken for fake: 0 of 7 (0%)."
    machine_line = [line for line in lines if line.startswith("The machine's two-sample test on the same fruit")]
    assert machine_line == ([] if machine["two_sample_accuracy"] is None else
                            [f"The machine's two-sample test on the same fruit: {machine['two_sample_accuracy']:.2f} "
                             f"(95% interval {machine['two_sample_low']:.2f}-{machine['two_sample_high']:.2f})."])

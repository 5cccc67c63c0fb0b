"use strict";
// The spot-the-fake page: one drawing at a time, answered with a click or a key (R, F; P and S at the start).
const $ = (id) => document.getElementById(id);
const test = { token: null, practice: [], scored: [], queue: [], inPractice: false, current: null, busy: true };

async function post(path, body) {
  const reply = await fetch(path, { method: "POST", headers: { "Content-Type": "application/json" },
                                    body: JSON.stringify(body) });
  const data = await reply.json().catch(() => ({ error: reply.statusText }));
  if (!reply.ok) throw new Error(data.error || reply.statusText);
  return data;
}

function fail(error) {
  test.busy = true;
  $("error").textContent = "Error: " + error.message;
  $("error").hidden = false;
}

function answerable(yes) {
  test.busy = !yes;
  $("real").disabled = $("fake").disabled = !yes;
}

async function load() {
  const started = await post("/api/start", {});
  Object.assign(test, { token: started.token, practice: started.practice, scored: started.scored });
  $("about").textContent = started.about;
  $("practice").disabled = started.practice.length === 0;
  $("skip").disabled = false;
  (started.practice.length ? $("practice") : $("skip")).focus();
}

function begin(withPractice) {
  $("intro").hidden = true;
  $("judge").hidden = false;
  test.inPractice = withPractice && test.practice.length > 0;
  test.queue = (test.inPractice ? test.practice : test.scored).slice();
  $("skip-rest").hidden = !test.inPractice;
  next();
}

function next() {
  if (test.queue.length === 0 && test.inPractice) {
    test.inPractice = false;
    test.queue = test.scored.slice();
    $("skip-rest").hidden = true;
    $("feedback").textContent += " The practice is over: the scored round starts now, without feedback.";
  }
  const round = test.inPractice ? test.practice : test.scored;
  test.current = test.queue.shift();
  answerable(false);
  $("progress").textContent = (test.inPractice ? "Practice" : "Scored round") +
    `: drawing ${round.length - test.queue.length} of ${round.length}`;
  $("drawing").src = `/img/${test.current}.png`;
}

async function judge(answer) {
  if (test.busy) return;
  answerable(false);
  try {
    const reply = await post("/api/answer", { token: test.token, id: test.current, answer: answer });
    if (reply.results) return show(reply.results);
    $("feedback").textContent = reply.truth === undefined ? "" :
      `${reply.truth === answer ? "Right" : "Wrong"}: that drawing was ${reply.truth}.`;
    next();
  } catch (error) { fail(error); }
}

function skipRest() {
  if (!test.inPractice || test.busy) return;
  test.queue = [];
  $("feedback").textContent = "";
  next();
}

function show(results) {
  $("judge").hidden = true;
  $("results").hidden = false;
  $("score").textContent = `Judged right: ${results.accuracy.toFixed(2)} (0.5 = guessing)`;
  for (const line of results.lines) {
    const p = document.createElement("p");
    p.textContent = line;
    $("lines").appendChild(p);
  }
  $("score").focus();
}

$("drawing").addEventListener("load", () => { answerable(true); });
$("drawing").addEventListener("error", () => fail(new Error("a drawing could not be loaded")));
$("practice").addEventListener("click", () => begin(true));
$("skip").addEventListener("click", () => begin(false));
$("real").addEventListener("click", () => judge("real"));
$("fake").addEventListener("click", () => judge("fake"));
$("skip-rest").addEventListener("click", skipRest);
document.addEventListener("keydown", (event) => {
  if (event.ctrlKey || event.altKey || event.metaKey) return;
  const key = event.key.toLowerCase();
  if (!$("intro").hidden && !$("skip").disabled) {
    if (key === "p" && !$("practice").disabled) begin(true);
    if (key === "s") begin(false);
  } else if (!$("judge").hidden) {
    if (key === "r") judge("real");
    if (key === "f") judge("fake");
    if (key === "s") skipRest();
  }
});
load().catch(fail);

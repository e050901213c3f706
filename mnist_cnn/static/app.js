// The drawing page: strokes on a canvas -> a PNG -> POST /predict -> the answer on the page.
"use strict";

const WAIT_MS = 150; // while drawing, ask for a prediction at most this often
const PEN_WIDTH = 18; // in canvas pixels (the canvas is 280 wide): about MNIST's stroke for its size

const pad = document.getElementById("pad");
const pen = pad.getContext("2d");
const $ = (id) => document.getElementById(id);
const heat = $("heat").getContext("2d"); // 28x28: one canvas pixel per number of the class map

let classes = "0123456789".split(""); // replaced by the net's own classes from GET /model
let inked = false; // anything drawn since the last clear?
let timer = null; // the pending prediction, while drawing
let busy = false; // a drawing being read: at most one at a time ...
let again = false; // ... and one more once it is answered, if the drawing changed meanwhile
let asking = 0; // requests under way, the drawing's and a picked file's
let generation = 0; // bumped by Clear and by a picked file: older answers are dropped
let lastFile = null; // the picked file shown, to read again when the checkbox asks for its map
const strokes = new Map(); // pointer id -> its last point: two fingers draw two strokes

// --- Drawing -------------------------------------------------------------------------------

function setUpPen() {
  pen.lineWidth = PEN_WIDTH;
  pen.lineCap = "round";
  pen.lineJoin = "round";
  pen.strokeStyle = "#fff";
  pen.fillStyle = "#fff";
}

// A pointer event's position in canvas pixels (the canvas is shown at another size).
function pointOf(event) {
  const box = pad.getBoundingClientRect();
  return [
    ((event.clientX - box.left) * pad.width) / box.width,
    ((event.clientY - box.top) * pad.height) / box.height,
  ];
}

function line([x0, y0], [x1, y1]) {
  pen.beginPath();
  pen.moveTo(x0, y0);
  pen.lineTo(x1, y1);
  pen.stroke();
}

function dot([x, y]) {
  pen.beginPath();
  pen.arc(x, y, PEN_WIDTH / 2, 0, 2 * Math.PI);
  pen.fill();
}

pad.addEventListener("pointerdown", (event) => {
  event.preventDefault();
  pad.setPointerCapture(event.pointerId); // keep the stroke when it leaves the canvas
  const point = pointOf(event);
  strokes.set(event.pointerId, point);
  dot(point);
  inked = true;
  soon();
});

pad.addEventListener("pointermove", (event) => {
  let last = strokes.get(event.pointerId);
  if (!last) return; // moving without pressing
  // Fast strokes deliver several positions per event: draw through all of them.
  const events = event.getCoalescedEvents ? event.getCoalescedEvents() : [];
  for (const e of events.length ? events : [event]) {
    const point = pointOf(e);
    line(last, point);
    last = point;
  }
  strokes.set(event.pointerId, last);
  soon();
});

for (const type of ["pointerup", "pointercancel"]) {
  pad.addEventListener(type, (event) => {
    strokes.delete(event.pointerId);
    soon();
  });
}

function clearPad() {
  pen.clearRect(0, 0, pad.width, pad.height);
  inked = false;
  clearTimeout(timer);
  timer = null;
  generation += 1;
  markBusy();
}

// aria-busy: whether an answer is still to come (screen readers wait; so do the tests).
function markBusy() {
  $("answer").setAttribute("aria-busy", String(timer !== null || busy || asking > 0));
}

$("clear").addEventListener("click", () => {
  clearPad();
  lastFile = null;
  showNothing();
});

// --- Asking the server ---------------------------------------------------------------------

// Throttled: the first change starts a timer, later ones ride along, so predictions come every
// WAIT_MS while drawing, and the last one shows the finished drawing.
function soon() {
  if (timer === null) timer = setTimeout(sendDrawing, WAIT_MS);
  markBusy();
}

async function sendDrawing() {
  timer = null;
  if (!inked) return markBusy();
  if (busy) {
    again = true;
    return;
  }
  busy = true;
  const asked = generation;
  try {
    const png = await new Promise((resolve) => pad.toBlob(resolve, "image/png"));
    const answer = await predict(png, "drawing.png");
    if (asked === generation) show(answer, "your drawing");
  } catch (error) {
    if (asked === generation) showError(error.message);
  } finally {
    busy = false;
    if (again) {
      again = false;
      sendDrawing();
    }
    markBusy();
  }
}

// The query of /predict: every class's probability, for the bars, and the class map when the
// checkbox asks for it (unticked, the server does not compute it).
function predictQuery() {
  const query = new URLSearchParams({ top: String(classes.length) });
  if ($("explain").checked) query.set("explain", "1");
  return query;
}

// POST one image to /predict; the answer, or an Error with the server's one-sentence message.
async function predict(file, name) {
  const form = new FormData();
  form.append("file", file, name);
  asking += 1;
  markBusy();
  try {
    const response = await fetch(`predict?${predictQuery()}`, { method: "POST", body: form });
    const answer = await response.json().catch(() => ({}));
    if (!response.ok) throw new Error(answer.error || `the server answered ${response.status}`);
    return answer;
  } finally {
    asking -= 1;
    setTimeout(markBusy); // once the caller has shown the answer
  }
}

async function sendFile(file) {
  clearPad(); // the answer is the photo's, not the drawing's
  lastFile = file;
  const asked = generation;
  $("source").textContent = `Reading ${file.name}…`;
  try {
    const answer = await predict(file, file.name);
    if (asked === generation) show(answer, file.name);
  } catch (error) {
    if (asked === generation) showError(error.message);
  }
}

$("file").addEventListener("change", async (event) => {
  const file = event.target.files[0];
  if (!file) return;
  await sendFile(file);
  event.target.value = ""; // picking the same file again reads it again
});

// Ticked: read what is shown again, this time with its map. Unticked: just hide the map.
$("explain").addEventListener("change", () => {
  if (!$("explain").checked) hideHeat();
  else if (inked) soon();
  else if (lastFile) sendFile(lastFile);
});

// --- Showing the answer --------------------------------------------------------------------

function makeBars() {
  const bars = $("bars");
  bars.replaceChildren(
    ...classes.map((name) => {
      const row = document.createElement("li");
      row.innerHTML = '<span class="name"></span><span class="track"><span class="fill"></span></span><span class="value"></span>';
      row.querySelector(".name").textContent = name;
      return row;
    }),
  );
}

function show(answer, source) {
  $("error").hidden = true;
  $("label").textContent = answer.label;
  $("probability").textContent = percent(answer.probability);
  $("source").textContent = `from ${source}`;
  $("seen").src = answer.image;
  if (answer.explain && $("explain").checked) showHeat(answer.explain.map);
  else hideHeat();
  $("bars").classList.remove("waiting");
  const probability = new Map(answer.top.map((t) => [t.digit, t.probability]));
  $("bars").querySelectorAll("li").forEach((row, digit) => {
    const p = probability.get(digit) ?? 0;
    row.classList.toggle("best", digit === answer.digit);
    row.querySelector(".fill").style.width = `${100 * p}%`;
    row.querySelector(".value").textContent = percent(p);
  });
}

function showError(message) {
  $("error").textContent = message;
  $("error").hidden = false;
  $("bars").classList.add("waiting");
}

function showNothing() {
  $("error").hidden = true;
  $("label").textContent = "?";
  $("probability").textContent = "";
  $("source").textContent = "";
  $("seen").removeAttribute("src");
  hideHeat();
  $("bars").classList.remove("waiting");
  $("bars").querySelectorAll("li").forEach((row) => {
    row.classList.remove("best");
    row.querySelector(".fill").style.width = "0";
    row.querySelector(".value").textContent = "";
  });
}

// The class map over the 28x28 image, coloured from its lowest number (blue) to its highest
// (red): its numbers are scores, and only their differences count.
function showHeat(map) {
  const values = map.flat();
  const low = Math.min(...values);
  const range = Math.max(...values) - low || 1; // a flat map: all blue
  map.forEach((row, y) =>
    row.forEach((value, x) => {
      heat.fillStyle = `hsl(${240 * (1 - (value - low) / range)} 100% 50%)`;
      heat.fillRect(x, y, 1, 1);
    }),
  );
  $("heat").hidden = false;
  $("heat-note").hidden = false;
}

function hideHeat() {
  $("heat").hidden = true;
  $("heat-note").hidden = true;
}

// One decimal; the ends say only that they are past it (the net is rarely unsure).
function percent(p) {
  if (p >= 0.9995) return ">99.9%";
  if (p < 0.0005) return "<0.1%";
  return `${(100 * p).toFixed(1)}%`;
}

// --- Start ---------------------------------------------------------------------------------

async function describeNet() {
  try {
    const response = await fetch("model");
    const net = await response.json();
    classes = net.classes;
    const accuracy =
      net.test_accuracy == null ? `learnt on ${net.dataset}` : `${percent(net.test_accuracy)} right on the ${net.dataset} test set`;
    $("model").textContent =
      `The ${net.name} net (${net.weights}): ${net.parameters.toLocaleString("en")} parameters, ${accuracy}.`;
  } catch {
    $("model").textContent = "Could not ask the server which net it serves.";
  }
  makeBars();
}

setUpPen();
makeBars();
describeNet();

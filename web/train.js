// The training page: fetches the data and the recipe, starts a run through the wasm module,
// and steps it in a loop that yields to the browser between steps. For web/train_test.mjs it
// keeps its measurements in window.wgformer.
import init, { load_translator, start_training } from "./pkg/wgformer_web.js";

const DATA = "../data/fashion-mnist/";
const FILES = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"];
const TRAIN_IMAGES = 20000, TEST_IMAGES = 1000, EVAL_EVERY = 50;
const $ = (id) => document.getElementById(id);
const w = (window.wgformer = { loadedAt: performance.now(), firstStepAt: null, losses: [], smoothed: [], accuracy: [], steps: 0, longTasks: [], perSecond: 0 });
new PerformanceObserver((list) => {
  for (const e of list.getEntries()) w.longTasks.push({ start: e.startTime, duration: e.duration });
}).observe({ type: "longtask", buffered: true });

let trainer = null, running = false, files = null, recipe = null;
// Calls into the trainer never overlap: each waits for the one before.
let chain = Promise.resolve();
const exclusive = (f) => { const p = chain.then(f); chain = p.catch(() => {}); return p; };
const message = (text, error = false) => { $("status").textContent = text; $("status").className = error ? "error" : ""; };
const errorText = (e) => (e && e.message) || String(e);

async function boot() {
  if (!navigator.gpu) throw new Error("This browser has no WebGPU (navigator.gpu is missing): try a recent Chrome or Edge, or Firefox Nightly.");
  const adapter = await navigator.gpu.requestAdapter();
  if (!adapter) throw new Error("This browser has WebGPU but offers no adapter: it may be turned off for this GPU or driver.");
  // wgpu reports no adapter name on the web; the browser's adapter info says which it is.
  const info = adapter.info;
  w.adapter = info ? [info.vendor, info.architecture, info.description].filter(Boolean).join(" ") : "";
  message("loading the data and the engine...");
  const fetchBytes = async (url) => {
    const r = await fetch(url);
    if (!r.ok) throw new Error(`could not fetch ${url}: ${r.status}`);
    return new Uint8Array(await r.arrayBuffer());
  };
  [files, recipe] = await Promise.all([Promise.all(FILES.map((f) => fetchBytes(DATA + f))), fetch("recipe.json").then((r) => r.text()), init()]);
  await startRun(null);
}

async function startRun(zip) {
  const next = await start_training(...files.map((f) => f.slice()), recipe, TRAIN_IMAGES, TEST_IMAGES, zip);
  trainer = next;
  w.steps = trainer.steps();
  $("adapter").textContent = `${w.adapter} ${trainer.adapter()}`;
  $("step").textContent = w.steps;
  for (const id of ["start", "download", "continue", "classify", "sample", "upload", "tr-files"]) $(id).disabled = false;
  message(zip ? `continuing a downloaded model from step ${w.steps}: press Start` : "ready: press Start to train");
}

async function loop() {
  while (running) {
    try {
      const events = JSON.parse(await exclusive(() => trainer.step()));
      w.firstStepAt ??= performance.now();
      for (const e of events) handle(e);
      if (w.steps % EVAL_EVERY === 0) await evaluate();
    } catch (e) {
      running = false;
      message("training stopped: " + errorText(e), true);
      $("start").disabled = false; $("pause").disabled = true;
    }
    // Yield, so that the page draws and takes input between steps.
    await new Promise((r) => setTimeout(r, 0));
  }
}

function handle(e) {
  if (e.kind === "step") {
    const r = e.report;
    w.steps = r.step;
    if (Number.isFinite(r.loss)) { w.losses.push(r.loss); w.smoothed.push([r.step, r.smoothed]); }
    w.perSecond = r.per_second;
    $("step").textContent = r.step;
    $("loss").textContent = r.smoothed.toFixed(3);
    $("throughput").textContent = `${r.per_second.toFixed(0)} images/s (${(r.per_second / 32).toFixed(1)} steps/s)`;
    if (r.step % 5 === 0) drawChart();
  } else if (e.kind === "evaluated") {
    const acc = e.values.find(([k]) => k === "test_accuracy");
    if (acc) record(acc[1]);
  }
}

async function evaluate() {
  record(await exclusive(() => trainer.evaluate()));
}

function record(accuracy) {
  w.accuracy.push([w.steps, accuracy]);
  $("accuracy").textContent = `${(100 * accuracy).toFixed(1)}% (${TEST_IMAGES} images, step ${w.steps})`;
  drawChart();
}

function drawChart() {
  const c = $("chart"), g = c.getContext("2d"), W = c.width, H = c.height, L = 50, R = 50, T = 30, B = 40;
  g.clearRect(0, 0, W, H);
  g.font = "12px system-ui"; g.fillStyle = "#222"; g.strokeStyle = "#999";
  g.fillText("ViT on Fashion-MNIST in this tab: training loss (smoothed) and test accuracy", L, 16);
  g.strokeRect(L, T, W - L - R, H - T - B);
  const steps = Math.max(10, w.steps), maxLoss = Math.max(0.5, ...w.smoothed.map(([, l]) => l));
  const x = (s) => L + (W - L - R) * (s / steps), yl = (l) => H - B - (H - T - B) * (l / maxLoss), ya = (a) => H - B - (H - T - B) * a;
  for (let i = 0; i <= 4; i++) {
    const s = Math.round((steps * i) / 4);
    g.fillText(String(s), x(s) - 8, H - B + 14);
    g.fillText((maxLoss * i / 4).toFixed(1), 12, yl(maxLoss * i / 4) + 4);
    g.fillText(`${25 * i}%`, W - R + 6, ya(i / 4) + 4);
  }
  g.fillText("step", W / 2, H - 6);
  g.save(); g.translate(12, H / 2 + 40); g.rotate(-Math.PI / 2); g.fillStyle = "#3b6fb6"; g.fillText("loss", 0, 0); g.restore();
  g.save(); g.translate(W - 8, H / 2 - 40); g.rotate(Math.PI / 2); g.fillStyle = "#c0392b"; g.fillText("test accuracy", 0, 0); g.restore();
  g.strokeStyle = "#3b6fb6"; g.beginPath();
  w.smoothed.forEach(([s, l], i) => (i ? g.lineTo(x(s), yl(l)) : g.moveTo(x(s), yl(l))));
  g.stroke();
  g.fillStyle = "#c0392b";
  for (const [s, a] of w.accuracy) { g.beginPath(); g.arc(x(s), ya(a), 3, 0, 2 * Math.PI); g.fill(); }
}

async function classify(bytes) {
  $("classify-error").textContent = "";
  try {
    const { names, probs } = JSON.parse(await exclusive(() => trainer.classify(bytes)));
    const order = probs.map((p, i) => [p, i]).sort((a, b) => b[0] - a[0]).slice(0, 3);
    $("prediction").innerHTML = "";
    for (const [p, i] of order) {
      const li = document.createElement("li");
      li.innerHTML = `<span class="bar" style="width:${(100 * p).toFixed(0)}px"></span> `;
      li.append(`${names[i]} ${(100 * p).toFixed(1)}%`);
      $("prediction").append(li);
    }
    w.lastPrediction = names[order[0][1]];
  } catch (e) {
    $("classify-error").textContent = "could not classify this: " + errorText(e);
  }
}

const drawing = $("draw").getContext("2d");
const clear = () => { drawing.fillStyle = "#000"; drawing.fillRect(0, 0, 280, 280); };
const canvasPng = () => new Promise((ok) => $("draw").toBlob(async (b) => ok(new Uint8Array(await b.arrayBuffer())), "image/png"));
let pen = false;
$("draw").addEventListener("pointerdown", (e) => { pen = true; drawing.beginPath(); drawing.moveTo(e.offsetX, e.offsetY); });
$("draw").addEventListener("pointermove", (e) => {
  if (!pen) return;
  drawing.strokeStyle = "#fff"; drawing.lineWidth = 22; drawing.lineCap = "round";
  drawing.lineTo(e.offsetX, e.offsetY); drawing.stroke();
});
addEventListener("pointerup", () => (pen = false));
$("clear").onclick = clear;
$("classify").onclick = async () => classify(await canvasPng());
$("sample").onclick = async () => {
  const i = Math.floor(Math.random() * TEST_IMAGES), pixels = trainer.sample(i), img = drawing.createImageData(280, 280);
  for (let p = 0; p < 280 * 280; p++) {
    const v = pixels[Math.floor(p / 280 / 10) * 28 + Math.floor((p % 280) / 10)];
    img.data.set([v, v, v, 255], 4 * p);
  }
  drawing.putImageData(img, 0, 0);
  w.lastSample = trainer.sample_label(i);
  message(`test image ${i}: a ${w.lastSample}`);
  await classify(await canvasPng());
};
$("upload").onchange = async (e) => { const f = e.target.files[0]; if (f) await classify(new Uint8Array(await f.arrayBuffer())); };
$("start").onclick = () => {
  running = true; $("start").disabled = true; $("pause").disabled = false;
  message("training...");
  loop();
};
$("pause").onclick = () => {
  running = false; $("start").disabled = false; $("pause").disabled = true;
  message(`paused at step ${w.steps}: Start continues`);
};
$("download").onclick = async () => {
  try {
    const zip = await exclusive(() => trainer.download());
    const a = document.createElement("a");
    a.href = URL.createObjectURL(new Blob([zip], { type: "application/zip" }));
    a.download = `wgformer-vit-step-${w.steps}.zip`;
    a.click();
  } catch (e) {
    message("could not save the model: " + errorText(e), true);
  }
};
$("continue").onchange = async (e) => {
  const f = e.target.files[0];
  if (!f) return;
  $("pause").onclick();
  try {
    const bytes = new Uint8Array(await f.arrayBuffer());
    await exclusive(() => startRun(bytes));
    w.losses = []; w.smoothed = []; w.accuracy = [];
  } catch (err) {
    message(`could not continue from ${f.name}: ${errorText(err)} (the current run is unchanged)`, true);
  }
};

let translator = null;
const trMessage = (text, error = false) => { $("tr-status").textContent = text; $("tr-status").className = error ? "error" : ""; };
$("tr-files").onchange = async (e) => {
  const picked = [...e.target.files];
  if (!picked.length) return;
  trMessage("loading...");
  try {
    const bytes = await Promise.all(picked.map(async (f) => new Uint8Array(await f.arrayBuffer())));
    translator = await load_translator(picked.map((f) => f.name), bytes);
    $("translate").disabled = false;
    trMessage(`loaded ${picked.map((f) => f.name).join(", ")}`);
  } catch (err) {
    trMessage("could not load this checkpoint: " + errorText(err) + (translator ? " (the loaded one stays)" : ""), true);
  }
};
$("translate").onclick = async () => {
  $("translate").disabled = true;
  trMessage("translating...");
  try {
    const { lines, note } = JSON.parse(await translator.translate($("tr-input").value));
    $("tr-output").textContent = lines.join("\n");
    w.translation = lines.join("\n");
    trMessage(note || "done");
  } catch (err) {
    trMessage("could not translate: " + errorText(err), true);
  }
  $("translate").disabled = false;
};

clear();
boot().catch((e) => { message(errorText(e), true); w.error = errorText(e); });

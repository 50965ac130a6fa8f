// The training page in headless Chromium (WebGPU on SwiftShader): train for about a minute,
// then check that the loss fell (the last 10 steps' mean at most 0.7x the first 10's), that no
// main-thread task over 200 ms ran after the first step, that Pause stops the step counter
// within 1 s, that the downloaded model scores over 50% with `wgformer eval` on lavapipe, that a
// test image is classified, that a bad upload and a checkpoint of the other kind show a
// message, that a translation checkpoint (trained here natively) translates in the page, and
// that a browser without WebGPU shows a message. Saves a screenshot. Prints the
// browser's throughput and the figures for docs. Exit 1 on any failure.
import { execFileSync } from "node:child_process";
import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { launch } from "./browser.mjs";
import { pageUrl, serve } from "./serve.mjs";

const TRAIN_SECONDS = Number(process.env.PAGE_TRAIN_SECONDS || 60);
const MIN_STEPS = Number(process.env.PAGE_MIN_STEPS || 200);
const repo = new URL("..", import.meta.url).pathname;
const scratch = mkdtempSync(join(tmpdir(), "wgformer-page-"));
const failures = [];
const check = (ok, what) => { console.log(`${ok ? "ok  " : "FAIL"}  ${what}`); if (!ok) failures.push(what); };
const mean = (v) => v.reduce((a, b) => a + b, 0) / Math.max(1, v.length);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

const server = await serve();
const url = pageUrl(server, "index.html");
let browser = await launch();
try {
  const page = await browser.newPage({ acceptDownloads: true });
  page.on("pageerror", (e) => console.error(`[page error] ${e}`));
  await page.goto(url);
  await page.waitForFunction(() => !document.getElementById("start").disabled || window.wgformer.error, null, { timeout: 120000 });
  const bootError = await page.evaluate(() => window.wgformer.error);
  if (bootError) throw new Error(`the page did not start: ${bootError}`);
  await page.click("#start");
  await page.waitForFunction(() => window.wgformer.firstStepAt !== null, null, { timeout: 120000 });
  const toFirstStep = await page.evaluate(() => (window.wgformer.firstStepAt - window.wgformer.loadedAt) / 1000);
  console.log(`page load to the first training step: ${toFirstStep.toFixed(1)} s`);
  // About a minute, and at least MIN_STEPS steps (a slower machine trains longer, up to 5 minutes).
  const trainStart = Date.now();
  await sleep(TRAIN_SECONDS * 1000);
  while ((await page.evaluate(() => window.wgformer.steps)) < MIN_STEPS && Date.now() - trainStart < 300000) {
    await sleep(1000);
  }
  const trainedSeconds = (Date.now() - trainStart) / 1000;
  await page.click("#pause");
  const afterPause = await page.evaluate(() => window.wgformer.steps);
  await sleep(1000);
  const oneSecondLater = await page.evaluate(() => window.wgformer.steps);
  await sleep(1000);
  const twoSecondsLater = await page.evaluate(() => window.wgformer.steps);
  check(oneSecondLater === twoSecondsLater && oneSecondLater - afterPause <= 1, `Pause stops the steps within 1 s (${afterPause}, ${oneSecondLater}, ${twoSecondsLater})`);

  const w = await page.evaluate(() => window.wgformer);
  const first = mean(w.losses.slice(0, 10)), last = mean(w.losses.slice(-10));
  check(w.losses.length >= 20 && last <= 0.7 * first, `the loss fell: ${first.toFixed(3)} over the first 10 steps, ${last.toFixed(3)} over the last 10 (${w.losses.length} steps)`);
  const long = w.longTasks.filter((t) => t.start >= w.firstStepAt && t.duration > 200);
  check(long.length === 0, `no main-thread task over 200 ms after the first step (${long.map((t) => t.duration.toFixed(0)).join(", ") || "none"}; ${w.longTasks.length} long tasks in all)`);
  const stepsPerSecond = w.perSecond / 32;
  console.log(`browser: ${w.perSecond.toFixed(0)} images/s = ${stepsPerSecond.toFixed(2)} steps/s of 32 (web/recipe.json), ${w.steps} steps in ${trainedSeconds.toFixed(0)} s; last test accuracy ${JSON.stringify(w.accuracy.at(-1))}`);

  await page.click("#sample");
  await page.waitForFunction(() => window.wgformer.lastPrediction, null, { timeout: 30000 });
  const [predicted, truth] = await page.evaluate(() => [window.wgformer.lastPrediction, window.wgformer.lastSample]);
  check(Boolean(predicted), `a test image (a ${truth}) is classified: ${predicted}`);

  await page.setInputFiles("#upload", { name: "notes.txt", mimeType: "text/plain", buffer: Buffer.from("not an image at all") });
  await page.waitForFunction(() => document.getElementById("classify-error").textContent, null, { timeout: 30000 });
  check(true, `a bad upload shows: ${await page.textContent("#classify-error")}`);

  await page.evaluate(() => (document.getElementById("classify-error").textContent = ""));
  await page.setInputFiles("#upload", { name: "huge.png", mimeType: "image/png", buffer: hugePng() });
  await page.waitForFunction(() => document.getElementById("classify-error").textContent, null, { timeout: 30000 });
  check(true, `a 20000x20000 image shows: ${await page.textContent("#classify-error")}`);

  // The screenshot for the docs: a test image classified, no error showing.
  await page.evaluate(() => { document.getElementById("classify-error").textContent = ""; window.wgformer.lastPrediction = undefined; });
  await page.click("#sample");
  await page.waitForFunction(() => window.wgformer.lastPrediction, null, { timeout: 30000 });
  await page.screenshot({ path: join(repo, "docs/browser-training.png"), fullPage: true });

  const [download] = await Promise.all([page.waitForEvent("download"), page.click("#download")]);
  const zip = join(scratch, "model.zip");
  await download.saveAs(zip);
  const wgformer = join(repo, "target/release/wgformer");
  const evalOut = execFileSync(wgformer, ["eval", "--checkpoint", zip, "--test-images", "1000"], { encoding: "utf8" });
  const accuracy = Number(/test accuracy: ([\d.]+)%/.exec(evalOut)?.[1]);
  check(accuracy > 50, `the downloaded model scores ${accuracy}% on 1000 test images with wgformer eval (lavapipe)`);

  const other = join(scratch, "translation.zip");
  writeFileSync(other, zipOf({ "config.json": '{"model_type": "transformer"}' }));
  await page.setInputFiles("#continue", other);
  await page.waitForFunction(() => document.getElementById("status").className === "error", null, { timeout: 30000 });
  check(true, `a checkpoint of the other model shows: ${await page.textContent("#status")}`);
  // A translation checkpoint made natively, then the ViT's zip given as one (a message).
  const tr = join(scratch, "translate");
  execFileSync(wgformer, ["train", "translate", "--data", "ding", "--train-pairs", "256", "--epochs", "1", "--size", "tiny",
    "--vocab", "300", "--valid-pairs", "4", "--test-pairs", "4", "--batch", "128", "--out", tr], { stdio: "ignore" });
  await page.setInputFiles("#tr-files", ["config.json", "tokenizer.json", "model.safetensors"].map((f) => join(tr, f)));
  await page.waitForFunction(() => !document.getElementById("translate").disabled, null, { timeout: 60000 });
  await page.click("#translate");
  await page.waitForFunction(() => window.wgformer.translation !== undefined || document.getElementById("tr-status").className, null, { timeout: 120000 });
  const translation = await page.evaluate(() => window.wgformer.translation);
  check(typeof translation === "string", `a translation checkpoint translates "Das ist ein Haus." to ${JSON.stringify(translation)} (${await page.textContent("#tr-status")})`);
  await page.setInputFiles("#tr-files", zip);
  await page.waitForFunction(() => document.getElementById("tr-status").className === "error", null, { timeout: 30000 });
  check(true, `a ViT given as a translation checkpoint shows: ${await page.textContent("#tr-status")}`);

  await page.setInputFiles("#continue", zip);
  await page.waitForFunction(() => /continuing a downloaded model/.test(document.getElementById("status").textContent), null, { timeout: 60000 });
  check(true, `the downloaded model is loaded back: ${await page.textContent("#status")}`);
} catch (e) {
  check(false, String(e));
} finally {
  await browser.close();
}

browser = await launch({ webgpu: false });
try {
  const page = await browser.newPage();
  await page.goto(url);
  await page.waitForFunction(() => window.wgformer.error, null, { timeout: 60000 });
  check(true, `without WebGPU the page says: ${await page.textContent("#status")}`);
} catch (e) {
  check(false, `without WebGPU: ${e}`);
} finally {
  await browser.close();
  server.close();
}
console.log(failures.length ? `${failures.length} checks failed` : "all checks passed");
process.exit(failures.length ? 1 : 0);

/** A stored zip of `files` (name -> text), as a user's wrong file might be. */
function zipOf(files) {
  const parts = [], central = [];
  let offset = 0;
  for (const [name, text] of Object.entries(files)) {
    const data = Buffer.from(text), n = Buffer.from(name), crc = crc32(data);
    const header = (sig, extra) => {
      const b = Buffer.alloc(extra ? 46 : 30);
      b.writeUInt32LE(sig, 0);
      const o = extra ? 2 : 0;
      b.writeUInt16LE(20, 4 + o); b.writeUInt32LE(crc, 14 + o); b.writeUInt32LE(data.length, 18 + o);
      b.writeUInt32LE(data.length, 22 + o); b.writeUInt16LE(n.length, 26 + o);
      if (extra) b.writeUInt32LE(offset, 42);
      return b;
    };
    const local = Buffer.concat([header(0x04034b50, false), n, data]);
    central.push(Buffer.concat([header(0x02014b50, true), n]));
    parts.push(local);
    offset += local.length;
  }
  const cd = Buffer.concat(central), end = Buffer.alloc(22);
  end.writeUInt32LE(0x06054b50, 0); end.writeUInt16LE(central.length, 8); end.writeUInt16LE(central.length, 10);
  end.writeUInt32LE(cd.length, 12); end.writeUInt32LE(offset, 16);
  return Buffer.concat([...parts, cd, end]);
}

/** A PNG whose header claims 20000 x 20000 grey pixels (with no pixel data). */
function hugePng() {
  const chunk = (type, data) => {
    const len = Buffer.alloc(4), crc = Buffer.alloc(4), body = Buffer.concat([Buffer.from(type), data]);
    len.writeUInt32BE(data.length); crc.writeUInt32BE(crc32(body));
    return Buffer.concat([len, body, crc]);
  };
  const ihdr = Buffer.alloc(13);
  ihdr.writeUInt32BE(20000, 0); ihdr.writeUInt32BE(20000, 4); ihdr[8] = 8; // 8-bit grey
  const signature = Buffer.from([137, 80, 78, 71, 13, 10, 26, 10]);
  return Buffer.concat([signature, chunk("IHDR", ihdr), chunk("IEND", Buffer.alloc(0))]);
}

function crc32(bytes) {
  let c = ~0;
  for (const b of bytes) { c ^= b; for (let k = 0; k < 8; k++) c = (c >>> 1) ^ (0xedb88320 & -(c & 1)); }
  return ~c >>> 0;
}

// Serves web/ on 127.0.0.1, opens index.html in headless Chromium with WebGPU on, waits for
// the kernel report and fails (exit 1) unless every case passed. Chromium: $CHROMIUM, or
// `chromium` on the PATH.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { execFileSync } from "node:child_process";
import { extname, join, normalize } from "node:path";
import { fileURLToPath } from "node:url";
import { chromium } from "playwright-core";

const root = fileURLToPath(new URL(".", import.meta.url));
const types = { ".html": "text/html", ".js": "text/javascript", ".wasm": "application/wasm" };
const server = createServer(async (req, res) => {
  const path = normalize(join(root, decodeURIComponent(new URL(req.url, "http://x").pathname)));
  if (!path.startsWith(root)) { res.writeHead(403).end(); return; }
  try {
    const body = await readFile(path.endsWith("/") ? join(path, "index.html") : path);
    res.writeHead(200, { "content-type": types[extname(path)] || "application/octet-stream" }).end(body);
  } catch {
    res.writeHead(404).end();
  }
});
await new Promise((ok) => server.listen(0, "127.0.0.1", ok));
const url = `http://127.0.0.1:${server.address().port}/index.html`;

let executablePath = process.env.CHROMIUM;
try {
  executablePath ||= execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
} catch {
  console.error("error: no Chromium found: install it (Debian: apt-get install chromium) or set CHROMIUM");
  process.exit(1);
}
const started = Date.now();
const browser = await chromium.launch({
  executablePath,
  headless: true,
  args: [
    "--enable-unsafe-webgpu", "--enable-unsafe-swiftshader", "--no-sandbox", "--disable-gpu-sandbox",
    "--disable-quic", "--no-first-run", "--disable-background-networking", "--disable-component-update",
    "--disable-sync",
  ],
});
let code = 1;
try {
  const page = await browser.newPage();
  page.on("console", (m) => console.error(`[page] ${m.text()}`));
  page.on("pageerror", (e) => console.error(`[page error] ${e}`));
  await page.goto(url);
  await page.waitForFunction(() => window.wgformerReport, null, { timeout: 15 * 60 * 1000 });
  const report = await page.evaluate(() => window.wgformerReport);
  if (report.error) {
    console.log(`error: ${report.error}`);
  } else {
    for (const c of report.cases) {
      console.log(`${c.ok ? "pass" : "FAIL"}  ${c.name}  (${c.detail}; ${c.ms.toFixed(0)} ms)`);
    }
    const secs = ((Date.now() - started) / 1000).toFixed(1);
    console.log(`${report.browserAdapter} ${report.adapter}: ${report.passed} passed, ${report.failed} failed, in ${secs} s ` +
      `(subgroups: ${report.subgroups}, f16: ${report.f16})`);
    code = report.failed === 0 && report.passed > 0 ? 0 : 1;
  }
} finally {
  await browser.close();
  server.close();
}
process.exit(code);

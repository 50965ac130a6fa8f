// Serves the repository on 127.0.0.1, opens web/kernels.html in headless Chromium with WebGPU on, waits for
// the kernel report and fails (exit 1) unless every case passed. Chromium: $CHROMIUM, or
// `chromium` on the PATH.
import { launch } from "./browser.mjs";
import { pageUrl, serve } from "./serve.mjs";

const server = await serve();
const url = pageUrl(server, "kernels.html");
const started = Date.now();
const browser = await launch();
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

// Headless Chromium for the browser checks: $CHROMIUM, or `chromium` on the PATH; WebGPU on
// SwiftShader unless `webgpu` is false (a browser without WebGPU, for the page's message).
import { execFileSync } from "node:child_process";
import { chromium } from "playwright-core";

export async function launch({ webgpu = true } = {}) {
  let executablePath = process.env.CHROMIUM;
  try {
    executablePath ||= execFileSync("sh", ["-c", "command -v chromium"]).toString().trim();
  } catch {
    console.error("error: no Chromium found: install it (Debian: apt-get install chromium) or set CHROMIUM");
    process.exit(1);
  }
  const gpu = webgpu
    ? ["--enable-unsafe-webgpu", "--enable-unsafe-swiftshader"]
    : ["--disable-features=WebGPU,WebGPUService", "--disable-gpu"];
  return chromium.launch({
    executablePath,
    headless: true,
    args: [
      ...gpu, "--no-sandbox", "--disable-gpu-sandbox", "--disable-quic", "--no-first-run",
      "--disable-background-networking", "--disable-component-update", "--disable-sync",
    ],
  });
}

// A static server for the repository (the page fetches ../data/fashion-mnist and its wasm from
// web/pkg), on 127.0.0.1. Run directly (`node web/serve.mjs [PORT]`) it serves until stopped and
// prints the page's address; web/run.mjs and web/train_test.mjs import `serve`.
import { createServer } from "node:http";
import { readFile } from "node:fs/promises";
import { extname, join, normalize } from "node:path";
import { fileURLToPath, pathToFileURL } from "node:url";

const root = fileURLToPath(new URL("..", import.meta.url));
const types = {
  ".html": "text/html", ".js": "text/javascript", ".mjs": "text/javascript", ".wasm": "application/wasm",
  ".json": "application/json", ".png": "image/png", ".svg": "image/svg+xml",
};

/** Serves the repository on 127.0.0.1:`port` (0: any free port); resolves to the server. */
export async function serve(port = 0) {
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
  await new Promise((ok) => server.listen(port, "127.0.0.1", ok));
  return server;
}

/** The address of `page` (a file of web/) on `server`. */
export function pageUrl(server, page) {
  return `http://127.0.0.1:${server.address().port}/web/${page}`;
}

if (import.meta.url === pathToFileURL(process.argv[1]).href) {
  const server = await serve(Number(process.argv[2] || 8000));
  console.log(`wgformer in the browser: ${pageUrl(server, "index.html")} (kernel cases: ${pageUrl(server, "kernels.html")})`);
}

/**
 * HTTP handler for the fleet page: the static files of dashboard/ and `/config.json`, which tells
 * the page where the MQTT WebSocket is and which topic prefix the fleet uses.
 *
 * Only a fixed list of files is served, made once at start (no path from the URL ever reaches the
 * file system), so there is no directory traversal to defend against: index.html, style.css, the
 * entry app.js, the page's modules (modules/*.js), the protocol module generated from protocol/
 * (generated/protocol.js, by scripts/build-page.mjs) and MQTT.js's browser build. Works from the
 * source tree (tests run the .ts) and from dist/dashboard (npm run build puts the files there).
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { createRequire } from "node:module";
import type { IncomingMessage, ServerResponse } from "node:http";
import { dirname, join } from "node:path";
import { ConfigError } from "../protocol/errors.js";

export interface DashboardOptions {
  /** MQTT over WebSocket URL for the page; default: the page's own origin + /mqtt. */
  mqttWsUrl?: string;
  /** Topic prefix of the fleet (Topics.prefix). */
  prefix: string;
}

/** What GET /config.json returns. */
export interface DashboardConfig {
  /** null: the page connects to ws(s)://<its own host>/mqtt. */
  mqttWsUrl: string | null;
  prefix: string;
}

interface StaticFile {
  path: string;
  contentType: string;
}

const PAGE_DIR = __dirname;

function mqttBrowserBundle(): string {
  // The ESM browser build runs in Chromium as a module; resolve it wherever npm put mqtt.
  // createRequire: works both in the compiled CommonJS and when tests load this file as ESM.
  const entry = createRequire(__filename).resolve("mqtt");
  let dir = dirname(entry);
  for (let i = 0; i < 4; i++) {
    const candidate = join(dir, "dist", "mqtt.esm.js");
    if (existsSync(candidate)) return candidate;
    dir = dirname(dir);
  }
  throw new ConfigError("the MQTT.js browser bundle (mqtt/dist/mqtt.esm.js) was not found", "reinstall the mqtt package");
}

const DOCS: [string, string][] = [
  ["/docs/README.md", "README.md"],
  ["/docs/nix.md", "docs/nix.md"],
  ["/docs/github.md", "docs/github.md"],
  ["/docs/node-red.md", "docs/node-red.md"],
];

function staticFiles(): Map<string, StaticFile> {
  const js = "text/javascript; charset=utf-8";
  const files = new Map<string, StaticFile>([
    ["/", { path: join(PAGE_DIR, "index.html"), contentType: "text/html; charset=utf-8" }],
    ["/index.html", { path: join(PAGE_DIR, "index.html"), contentType: "text/html; charset=utf-8" }],
    ["/app.js", { path: join(PAGE_DIR, "app.js"), contentType: js }],
    ["/generated/protocol.js", { path: join(PAGE_DIR, "generated", "protocol.js"), contentType: js }],
    ["/style.css", { path: join(PAGE_DIR, "style.css"), contentType: "text/css; charset=utf-8" }],
    ["/favicon.svg", { path: join(PAGE_DIR, "favicon.svg"), contentType: "image/svg+xml" }],
    ["/vendor/mqtt.esm.js", { path: mqttBrowserBundle(), contentType: js }],
  ]);
  const docs = new Map<string, StaticFile>();
  const modules = join(PAGE_DIR, "modules");
  for (const name of existsSync(modules) ? readdirSync(modules) : []) {
    if (name.endsWith(".js")) files.set(`/modules/${name}`, { path: join(modules, name), contentType: js });
  }
  // The docs the empty page links to, as plain text: from the source tree or the installed package.
  for (const [url, rel] of DOCS) {
    const found = [join(PAGE_DIR, "..", rel), join(PAGE_DIR, "..", "..", rel)].find((p) => existsSync(p));
    if (found) docs.set(url, { path: found, contentType: "text/plain; charset=utf-8" });
  }
  for (const [url, f] of files) {
    if (!existsSync(f.path)) throw new ConfigError(`fleet page file missing: ${f.path} (for ${url})`, "run npm run build");
  }
  for (const [url, f] of docs) files.set(url, f);
  return files;
}

/**
 * Returns a request handler that answers the fleet page's paths and returns false for anything
 * else (so the hub can try Node-RED, the API, the WebSocket upgrade next).
 */
export function createDashboardHandler(opts: DashboardOptions): (req: IncomingMessage, res: ServerResponse) => boolean {
  const files = staticFiles();
  const config: DashboardConfig = { mqttWsUrl: opts.mqttWsUrl ?? null, prefix: opts.prefix };
  const configBody = JSON.stringify(config);
  // Small files, read once: the page is the same until the hub restarts.
  const cache = new Map<string, Buffer>();

  return (req, res) => {
    const url = new URL(req.url ?? "/", "http://page.invalid");
    const isConfig = url.pathname === "/config.json";
    const file = files.get(url.pathname);
    if (!isConfig && !file) return false;

    if (req.method !== "GET" && req.method !== "HEAD") {
      res.writeHead(405, { allow: "GET, HEAD", "content-type": "text/plain; charset=utf-8" });
      res.end("method not allowed\n");
      return true;
    }
    const headers: Record<string, string | number> = {
      "x-content-type-options": "nosniff",
      "referrer-policy": "same-origin",
    };
    let body: Buffer;
    if (isConfig) {
      body = Buffer.from(configBody);
      headers["content-type"] = "application/json; charset=utf-8";
      headers["cache-control"] = "no-store";
    } else {
      const f = file!;
      let cached = cache.get(f.path);
      if (!cached) {
        cached = readFileSync(f.path);
        cache.set(f.path, cached);
      }
      body = cached;
      headers["content-type"] = f.contentType;
      headers["cache-control"] = "no-cache";
    }
    headers["content-length"] = body.length;
    res.writeHead(200, headers);
    res.end(req.method === "HEAD" ? undefined : body);
    return true;
  };
}

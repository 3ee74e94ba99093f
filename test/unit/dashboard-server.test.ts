/** The fleet page's HTTP handler: fixed files with the right types, /config.json, nothing else. */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createServer, type Server } from "node:http";
import type { AddressInfo } from "node:net";
import { createDashboardHandler } from "../../dashboard/server.js";

let server: Server;
let base = "";
const unhandled: string[] = [];

beforeAll(async () => {
  const handler = createDashboardHandler({ prefix: "site-a", mqttWsUrl: "wss://broker.example:8884/mqtt" });
  server = createServer((req, res) => {
    if (handler(req, res)) return;
    unhandled.push(req.url ?? "");
    res.writeHead(404).end("not the page");
  });
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(() => new Promise<void>((r) => server.close(() => r())));

describe("createDashboardHandler", () => {
  it("serves the page and its modules with correct content types", async () => {
    for (const [path, type, needle] of [
      ["/", "text/html", "<title>Lockstep fleet</title>"],
      ["/app.js", "text/javascript", "setRenderers"],
      ["/modules/session.js", "text/javascript", "import mqtt from"],
      ["/generated/protocol.js", "text/javascript", "Generated from protocol/"],
      ["/style.css", "text/css", ".cell.ok"],
      ["/vendor/mqtt.esm.js", "text/javascript", "export default"],
      ["/favicon.svg", "image/svg+xml", "<svg"],
      // The docs the empty page links to.
      ["/docs/README.md", "text/plain", "# Lockstep"],
      ["/docs/nix.md", "text/plain", "services.lockstep-agent"],
    ] as const) {
      const res = await fetch(base + path);
      expect(res.status, path).toBe(200);
      expect(res.headers.get("content-type"), path).toContain(type);
      expect(res.headers.get("x-content-type-options")).toBe("nosniff");
      expect(await res.text(), path).toContain(needle);
    }
  });

  it("tells the page the MQTT WebSocket URL and the prefix", async () => {
    const res = await fetch(base + "/config.json?x=1");
    expect(res.headers.get("content-type")).toContain("application/json");
    expect(await res.json()).toEqual({ mqttWsUrl: "wss://broker.example:8884/mqtt", prefix: "site-a" });
    const same = createDashboardHandler({ prefix: "lockstep" });
    let body = "";
    const res2 = { writeHead: () => res2, end: (b: Buffer) => (body = b.toString()) } as never;
    expect(same({ url: "/config.json", method: "GET" } as never, res2)).toBe(true);
    expect(JSON.parse(body)).toEqual({ mqttWsUrl: null, prefix: "lockstep" });
  });

  it("leaves other paths to the hub, including traversal attempts", async () => {
    unhandled.length = 0;
    for (const path of ["/admin", "/api/whoami", "/mqtt", "/../package.json", "/%2e%2e/package.json", "/dashboard/server.ts", "/vendor/../app.js.map", "/protocol.js", "/modules/../server.ts"]) {
      const res = await fetch(base + path);
      expect(res.status, path).toBe(404);
      expect(await res.text()).toBe("not the page");
    }
    expect(unhandled.length).toBe(9);
  });

  it("answers HEAD without a body and refuses other methods", async () => {
    const head = await fetch(base + "/app.js", { method: "HEAD" });
    expect(head.status).toBe(200);
    expect(Number(head.headers.get("content-length"))).toBeGreaterThan(1000);
    const post = await fetch(base + "/", { method: "POST", body: "x" });
    expect(post.status).toBe(405);
    expect(post.headers.get("allow")).toBe("GET, HEAD");
  });
});

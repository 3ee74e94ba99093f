/**
 * The hub's fleet stream (GET /api/fleet/stream, hub/fleet-stream.ts) on a real HTTP server over a
 * fake fleet view: the snapshot in parts then live changes on one ordered response, gzip when
 * asked, a change landing while the snapshot is read is not lost, changes of one host close
 * together go out once, a reader that does not read makes the hub wait (it buffers about one part,
 * not the fleet) and gets everything once it reads, and the number of open streams is bounded.
 */
import { createServer, request, type IncomingMessage, type Server, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { gunzipSync } from "node:zlib";
import pino from "pino";
import { afterEach, describe, expect, it } from "vitest";
import { fleetStreamHandler, type FleetStreamOptions } from "../../hub/fleet-stream.js";
import { FLEET_STREAM_PART_HOSTS, LineSplitter, type FleetStreamLine } from "../../protocol/fleet-stream.js";
import type { FleetChange, HostSnapshot } from "../../rollout/fleet-port.js";

function fakeFleet() {
  const hosts = new Map<string, HostSnapshot>();
  const listeners = new Set<(c: FleetChange) => void>();
  const info = (host: string) => ({ host, os: "nixos", agentVersion: "1.0.0", updatedAt: "2026-12-05T00:00:00Z" }) as unknown as HostSnapshot["info"];
  const fleet: FleetStreamOptions["fleet"] & { set(host: string, availability?: HostSnapshot["availability"]): void; remove(host: string): void } = {
    hosts: () => [...hosts.values()].map((h) => ({ ...h })),
    host: (id) => hosts.get(id),
    onChange: (l) => (listeners.add(l), () => listeners.delete(l)),
    set(host, availability = "online") {
      hosts.set(host, { host, info: info(host), availability, lastSeen: `2026-12-05T00:00:${String(hosts.size % 60).padStart(2, "0")}Z`, compartments: { system: { status: "ok", summary: "ok", checkedAt: "2026-12-05T00:00:00Z" } as never } });
      for (const l of listeners) l({ kind: "info", host });
    },
    remove(host) {
      const h = hosts.get(host)!;
      delete h.info;
      for (const l of listeners) l({ kind: "info", host });
    },
  };
  return { fleet, listeners };
}

let server: Server | undefined;
afterEach(async () => {
  server?.closeAllConnections();
  await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
  server = undefined;
});

async function serve(opts: FleetStreamOptions, seen?: (res: ServerResponse) => void): Promise<string> {
  const handler = fleetStreamHandler(opts);
  server = createServer((req, res) => {
    seen?.(res);
    // The API's login sets lockstepUser; here a header names the user.
    const user = req.headers["x-test-user"];
    handler(Object.assign(req, typeof user === "string" ? { lockstepUser: { name: user } } : {}), res);
  });
  await new Promise<void>((r) => server!.listen(0, "127.0.0.1", () => r()));
  return `http://127.0.0.1:${(server.address() as AddressInfo).port}/api/fleet/stream`;
}

/** Reads stream lines as they come (fetch decompresses gzip). */
async function open(url: string, user?: string) {
  const res = await fetch(url, { headers: { "accept-encoding": "gzip", ...(user ? { "x-test-user": user } : {}) } });
  const reader = res.body!.pipeThrough(new TextDecoderStream()).getReader();
  const split = new LineSplitter();
  const queue: FleetStreamLine[] = [];
  const next = async (): Promise<FleetStreamLine> => {
    while (queue.length === 0) {
      const { value, done } = await reader.read();
      if (done) throw new Error("stream ended");
      queue.push(...split.push(value).map((l) => JSON.parse(l) as FleetStreamLine));
    }
    return queue.shift()!;
  };
  return { res, next, cancel: () => reader.cancel() };
}

describe("GET /api/fleet/stream", () => {
  it("sends the snapshot in parts, the last one done, then each live change", async () => {
    const { fleet } = fakeFleet();
    const n = FLEET_STREAM_PART_HOSTS * 2 + 3;
    for (let i = 0; i < n; i++) fleet.set(`h-${i}`);
    const s = await open(await serve({ fleet, log: pino({ level: "silent" }) }));
    expect(s.res.headers.get("content-encoding")).toBe("gzip");
    const parts: FleetStreamLine[] = [];
    do parts.push(await s.next());
    while (!(parts.at(-1) as { done?: boolean }).done);
    expect(parts.map((p) => p.kind)).toEqual(["snapshot", "snapshot", "snapshot"]);
    const seen = parts.flatMap((p) => (p.kind === "snapshot" ? p.hosts.map((h) => h.host) : []));
    expect(new Set(seen).size).toBe(n);

    fleet.set("new-host", "offline");
    const change = await s.next();
    expect(change).toMatchObject({ kind: "changes", hosts: [{ host: "new-host", availability: "offline", info: { host: "new-host" }, lastSeen: fleet.host("new-host")!.lastSeen }] });
    fleet.remove("h-0");
    expect(await s.next()).toMatchObject({ kind: "changes", hosts: [{ host: "h-0", info: null }] });
    await s.cancel();
  });

  it("an empty fleet is one empty snapshot part, done", async () => {
    const { fleet } = fakeFleet();
    const s = await open(await serve({ fleet, log: pino({ level: "silent" }) }));
    expect(await s.next()).toEqual({ kind: "snapshot", hosts: [], done: true });
    await s.cancel();
  });

  it("keeps a change made while the snapshot is read, and sends a host changed twice at once one time, latest state", async () => {
    const { fleet } = fakeFleet();
    fleet.set("a");
    // A change right as the stream follows the fleet (before its snapshot): it must come after the snapshot.
    const hostsOf = fleet.hosts;
    let once = true;
    fleet.hosts = () => {
      const snap = hostsOf();
      if (once) {
        once = false;
        fleet.set("b", "offline");
        fleet.set("b", "online");
      }
      return snap;
    };
    const s = await open(await serve({ fleet, log: pino({ level: "silent" }) }));
    expect(await s.next()).toMatchObject({ kind: "snapshot", done: true, hosts: [{ host: "a" }] });
    expect(await s.next()).toMatchObject({ kind: "changes", hosts: [{ host: "b", availability: "online" }] });
    await s.cancel();
  });

  it("answers 503 past the open streams allowed, and frees a place when a page goes", async () => {
    const { fleet, listeners } = fakeFleet();
    const url = await serve({ fleet, log: pino({ level: "silent" }), maxStreams: 1 });
    const first = await open(url);
    await first.next();
    const refused = await fetch(url);
    expect(refused.status).toBe(503);
    expect(listeners.size).toBe(1);
    await first.cancel();
    // The server notices the page went away: its listener is dropped, a new page is let in.
    await expect.poll(() => listeners.size).toBe(0);
    const again = await open(url);
    expect(again.res.status).toBe(200);
    await again.cancel();
  });

  it("caps the streams of one user below the global cap, and answers HEAD without a stream", async () => {
    const { fleet, listeners } = fakeFleet();
    const url = await serve({ fleet, log: pino({ level: "silent" }), maxStreams: 3, maxStreamsPerUser: 2 });
    for (let i = 0; i < 5; i++) {
      const head = await fetch(url, { method: "HEAD", headers: { "x-test-user": "ann" } });
      expect(head.status).toBe(200);
      expect(head.headers.get("content-type")).toMatch(/ndjson/);
    }
    expect(listeners.size).toBe(0);
    const ann = [await open(url, "ann"), await open(url, "ann")];
    for (const s of ann) await s.next();
    const third = await fetch(url, { headers: { "x-test-user": "ann" } });
    expect(third.status).toBe(503);
    expect(((await third.json()) as { error: string }).error).toMatch(/ann streams the fleet to 2 pages/);
    // Another user still gets in, up to the global cap.
    const bob = await open(url, "bob");
    expect(bob.res.status).toBe(200);
    expect((await fetch(url, { headers: { "x-test-user": "cy" } })).status).toBe(503);
    // A page of ann's goes: ann may open one again.
    await ann[0]!.cancel();
    await expect.poll(() => listeners.size).toBe(2);
    const again = await open(url, "ann");
    expect(again.res.status).toBe(200);
    for (const s of [ann[1]!, bob, again]) await s.cancel();
  });

  it("sends plain text to a client that does not accept gzip", async () => {
    const { fleet } = fakeFleet();
    fleet.set("a");
    const url = await serve({ fleet, log: pino({ level: "silent" }) });
    const res = await fetch(url, { headers: { "accept-encoding": "identity" } });
    expect(res.headers.get("content-encoding")).toBeNull();
    const reader = res.body!.getReader();
    const { value } = await reader.read();
    const text = Buffer.from(value!).toString("utf8");
    expect(() => gunzipSync(Buffer.from(value!))).toThrow();
    expect(JSON.parse(text.split("\n")[0]!)).toMatchObject({ kind: "snapshot", done: true });
    await reader.cancel();
  });

  it("waits for a reader that does not read: about one part buffered, not the fleet, and everything arrives once it reads", async () => {
    const { fleet } = fakeFleet();
    // ~4 MB of JSON: far more than the socket takes from a reader that does not read.
    const n = FLEET_STREAM_PART_HOSTS * 20;
    for (let i = 0; i < n; i++) fleet.set(`host-${i}-${"x".repeat(700)}`);
    const partBytes = JSON.stringify(fleet.hosts().slice(0, FLEET_STREAM_PART_HOSTS)).length;
    let res: ServerResponse | undefined;
    let maxBuffered = 0;
    let lines = 0;
    const url = await serve({ fleet, log: pino({ level: "silent" }) }, (r) => {
      res = r;
      const write = r.write.bind(r) as (chunk: string) => boolean;
      r.write = ((chunk: string) => {
        const ok = write(chunk);
        lines++;
        maxBuffered = Math.max(maxBuffered, r.writableLength);
        return ok;
      }) as typeof r.write;
    });
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = request(url, { headers: { "accept-encoding": "identity" } }, resolve);
      req.on("error", reject);
      req.end();
    });
    response.pause();
    // The hub stops at a full connection, mid-snapshot, and a change meanwhile waits too.
    await expect.poll(() => res?.writableNeedDrain).toBe(true);
    const linesWhenFull = lines;
    expect(linesWhenFull).toBeLessThan(n / FLEET_STREAM_PART_HOSTS);
    fleet.set("late", "offline");
    await new Promise((r) => setImmediate(r));
    await new Promise((r) => setImmediate(r));
    expect(lines).toBe(linesWhenFull);

    const split = new LineSplitter();
    const got: FleetStreamLine[] = [];
    response.setEncoding("utf8");
    await new Promise<void>((resolve) => {
      response.on("data", (chunk: string) => {
        for (const l of split.push(chunk)) got.push(JSON.parse(l) as FleetStreamLine);
        if (got.some((l) => l.kind === "changes")) resolve();
      });
      response.resume();
    });
    const snapshot = got.filter((l) => l.kind === "snapshot");
    expect(snapshot.at(-1)).toMatchObject({ done: true });
    expect(new Set(snapshot.flatMap((l) => l.hosts.map((h) => h.host))).size).toBe(n);
    expect(got.findIndex((l) => l.kind === "changes")).toBe(snapshot.length);
    expect(got.at(-1)).toMatchObject({ kind: "changes", hosts: [{ host: "late", availability: "offline" }] });
    // The whole snapshot is ~20 parts; the connection never held more than the socket's buffer plus about one part.
    expect(maxBuffered).toBeLessThan(partBytes * 2);
    response.destroy();
  });
});

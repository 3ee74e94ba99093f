/**
 * `GET /api/fleet/stream` (protocol/fleet-stream.ts): the fleet page's host state from the hub's
 * fleet view, a snapshot then live changes, gzip-compressed when the browser accepts it. Runs
 * after the API's login check (any reader may see the fleet, as on MQTT).
 *
 * Work is bounded per connection whatever the fleet or the reader does: one line (at most
 * FLEET_STREAM_PART_HOSTS hosts) is serialized and written per turn of the event loop, and the next
 * only once the connection has taken it (the broker and the rollout engine share this loop). The
 * snapshot is held as the fleet view's host objects until each part goes out; changed hosts are
 * kept as a set of names (at most one entry per host), so a slow reader costs memory per host,
 * not per change, and never a serialized copy of the fleet. At most `maxStreams` pages stream at
 * once, at most `maxStreamsPerUser` of them for one user.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { constants as zlibConstants, createGzip, type Gzip } from "node:zlib";
import type { Logger } from "pino";
import { FLEET_STREAM_PART_HOSTS, FLEET_STREAM_PING_MS, type FleetStreamHost, type FleetStreamLine } from "../protocol/fleet-stream.js";
import type { HostSnapshot } from "../rollout/fleet-port.js";
import type { FleetView } from "../rollout/fleet-view.js";

export interface FleetStreamOptions {
  fleet: Pick<FleetView, "hosts" | "host" | "onChange">;
  log: Logger;
  /** Pages streaming at once; more are answered 503 (default 100). */
  maxStreams?: number;
  /** Pages one user streams at once (default 10): one user's tabs or scripts cannot hold every place. */
  maxStreamsPerUser?: number;
  pingMs?: number;
}

/** The fleet view's host → one stream host (availability "unknown" becomes null). */
function streamHost(h: HostSnapshot): FleetStreamHost {
  return {
    host: h.host,
    availability: h.availability === "unknown" ? null : h.availability,
    info: h.info ?? null,
    compartments: h.compartments,
    lastSeen: h.lastSeen ?? null,
  };
}

type Req = IncomingMessage & { lockstepUser?: { name: string } };
type Handler = (req: Req, res: ServerResponse) => void;

const HEADERS = {
  "content-type": "application/x-ndjson; charset=utf-8",
  "cache-control": "no-store",
  "x-content-type-options": "nosniff",
  // Proxies must pass each line on as it comes (nginx buffers otherwise).
  "x-accel-buffering": "no",
};

export function fleetStreamHandler(opts: FleetStreamOptions): Handler {
  const maxStreams = opts.maxStreams ?? 100;
  const maxPerUser = opts.maxStreamsPerUser ?? 10;
  let open = 0;
  /** Open streams per user name ("" without a login, as in tests that mount the handler alone). */
  const perUser = new Map<string, number>();
  return (req, res) => {
    // Express routes HEAD to GET handlers: a HEAD gets the headers, never a stream (nor a place).
    if (req.method === "HEAD") {
      res.writeHead(200, HEADERS);
      res.end();
      return;
    }
    const user = req.lockstepUser?.name ?? "";
    const mine = perUser.get(user) ?? 0;
    if (open >= maxStreams || mine >= maxPerUser) {
      const error =
        mine >= maxPerUser
          ? `${user || "this user"} streams the fleet to ${mine} pages already; close one (another tab or script) or try again shortly`
          : `${maxStreams} pages are streaming the fleet already; try again shortly`;
      res.writeHead(503, { "content-type": "application/json", "retry-after": "5" });
      res.end(JSON.stringify({ error }));
      return;
    }
    open++;
    perUser.set(user, mine + 1);
    const stream = new FleetStream(req, res, opts);
    res.on("close", () => {
      open--;
      const left = (perUser.get(user) ?? 1) - 1;
      if (left > 0) perUser.set(user, left);
      else perUser.delete(user);
      stream.close();
    });
    stream.start();
  };
}

class FleetStream {
  private readonly out: Gzip | ServerResponse;
  private readonly gzip: Gzip | undefined;
  /** The snapshot still to send (hosts as the fleet view gave them, serialized one part at a time), or undefined once sent. */
  private snapshot: HostSnapshot[] | undefined;
  private cursor = 0;
  /** Hosts changed since they were last written. */
  private readonly pending = new Set<string>();
  private scheduled = false;
  private waitingForDrain = false;
  private closed = false;
  private unfollow: () => void = () => undefined;
  private ping: NodeJS.Timeout | undefined;

  constructor(
    req: IncomingMessage,
    private readonly res: ServerResponse,
    private readonly opts: FleetStreamOptions,
  ) {
    const gzip = /\bgzip\b/.test(String(req.headers["accept-encoding"] ?? ""));
    res.writeHead(200, { ...HEADERS, ...(gzip ? { "content-encoding": "gzip" } : {}) });
    // Level 1: the snapshot of 10,000 hosts compresses ~10× at a fraction of the default's CPU.
    this.gzip = gzip ? createGzip({ level: 1 }) : undefined;
    if (this.gzip) {
      this.gzip.pipe(res);
      this.gzip.on("error", (err) => this.fail(err));
    }
    this.out = this.gzip ?? res;
  }

  start(): void {
    // Follow first, then take the snapshot, in the same turn: a change that lands in the cache
    // after the snapshot was read is in `pending` and goes out after it.
    this.unfollow = this.opts.fleet.onChange((change) => {
      if (change.kind === "job") return; // job states stay on MQTT
      this.pending.add(change.host);
      this.schedule();
    });
    this.snapshot = this.opts.fleet.hosts();
    this.ping = setInterval(() => {
      // A connection waiting for drain has lines on their way already; a ping would only add to them.
      if (this.waitingForDrain) return;
      this.send({ kind: "ping" });
    }, this.opts.pingMs ?? FLEET_STREAM_PING_MS);
    this.sendNext();
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.unfollow();
    clearInterval(this.ping);
    this.pending.clear();
    this.snapshot = undefined;
    this.gzip?.destroy();
  }

  private fail(err: Error): void {
    this.opts.log.warn({ err }, "fleet stream failed");
    this.close();
    this.res.destroy();
  }

  /** Sends the next line on a later turn: a burst of changes is one line, and the event loop is not held. */
  private schedule(): void {
    if (this.scheduled || this.waitingForDrain || this.closed) return;
    this.scheduled = true;
    setImmediate(() => {
      this.scheduled = false;
      this.sendNext();
    });
  }

  /**
   * One line per turn, and none while the connection has not taken the last one: the snapshot's
   * parts first (each serialized only when it goes out, so a connection buffers about one part,
   * never the whole fleet), then the changed hosts, at most a part's worth per line.
   */
  private sendNext(): void {
    if (this.closed || this.waitingForDrain) return;
    let line: FleetStreamLine;
    if (this.snapshot) {
      const part = this.snapshot.slice(this.cursor, this.cursor + FLEET_STREAM_PART_HOSTS).map(streamHost);
      this.cursor += FLEET_STREAM_PART_HOSTS;
      const done = this.cursor >= this.snapshot.length;
      if (done) this.snapshot = undefined;
      line = { kind: "snapshot", hosts: part, done };
    } else if (this.pending.size > 0) {
      const hosts: FleetStreamHost[] = [];
      for (const id of this.pending) {
        if (hosts.length === FLEET_STREAM_PART_HOSTS) break;
        this.pending.delete(id);
        const h = this.opts.fleet.host(id);
        hosts.push(h ? streamHost(h) : { host: id, availability: null, info: null, compartments: {}, lastSeen: null });
      }
      line = { kind: "changes", hosts };
    } else return;
    if (this.send(line)) this.schedule();
  }

  /** Writes one line and pushes it through the compressor; false: wait for drain (sendNext follows it). */
  private send(line: FleetStreamLine): boolean {
    if (this.closed) return false;
    const ok = this.out.write(JSON.stringify(line) + "\n");
    // A line must not wait in the compressor for more.
    this.gzip?.flush(zlibConstants.Z_SYNC_FLUSH);
    if (ok) return true;
    // The page reads slower than the hub writes: collect changes (one entry per host) until it caught up.
    this.waitingForDrain = true;
    this.out.once("drain", () => {
      this.waitingForDrain = false;
      this.sendNext();
    });
    return false;
  }
}

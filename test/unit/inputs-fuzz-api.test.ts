/**
 * Property tests over the hub's HTTP API as a client meets it, over real HTTP: the hub's own routes
 * as hub/start.ts mounts them (mountHubApi, with the real API auth, body parser, 404 and error
 * handlers; all but GET /api/fleet/stream, a response that never ends, which
 * test/unit/hub-fleet-stream.test.ts drives), the webhook handler the Node-RED webhook node mounts, a real AuditLog, AutomaticPause
 * and RolloutService (on the fake fleet, one rollout with a host hanging mid-pull). Request bodies,
 * content types, path parameters, query strings, Authorization and webhook headers (signature,
 * event, delivery, content type and length) each give the route's answer or a JSON error with the
 * status its code stands for: never a plain-text or 500 answer, a hang, or a state change from a
 * refused request (no merge asked for, no resume, no step cancelled, no re-check triggered).
 * (The merge-and-deploy body's own step in flows/02-manual.json is in inputs-fuzz.test.ts.)
 *
 * CI runs a fixed seed; `npm run fuzz` runs many more cases (FUZZ_RUNS, FUZZ_SEED).
 */
import { createHmac } from "node:crypto";
import { Agent, createServer, request, type Server } from "node:http";
import { mkdtempSync, rmSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import pino from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LoginBackoff } from "../../broker/login-backoff.js";
import { CredentialStore } from "../../broker/credentials.js";
import { createWebhookHandler } from "../../github/webhooks.js";
import { apiErrorHandler, apiNotFound } from "../../hub/api.js";
import { mountHubApi } from "../../hub/api-routes.js";
import { AuditLog } from "../../hub/audit-log.js";
import { apiAuthMiddleware, WEBHOOK_PATH, type RequestHandler } from "../../hub/node-red.js";
import type { AuditEvent } from "../../protocol/schemas.js";
import { AutomaticPause } from "../../rollout/automatic-pause.js";
import { StorageFile } from "../../hub/storage-file.js";
import { RolloutService } from "../../rollout/service.js";
import { RolloutStore } from "../../rollout/store.js";
import { FakeFleet } from "../support/fake-fleet.js";
import { fuzzParams, near } from "../support/fuzz.js";

const params = fuzzParams(20261207);
const COMMIT = "c".repeat(40);
const HOUR = 3_600_000;
const SECRET = "whsec-api-fuzz";

interface Answer {
  status: number;
  type: string;
  body: string;
}

interface Req {
  method: string;
  path: string;
  headers?: Record<string, string>;
  body?: Buffer | string;
}

type Express = { (req: unknown, res: unknown): void; get(path: string, ...h: unknown[]): void; post(path: string, ...h: unknown[]): void; use(...h: unknown[]): void };

/** The hub's API on a free port, with the parts a request could change recorded. */
async function apiWorld() {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-fuzz-api-"));
  const log = pino({ level: "silent" });
  const store = await CredentialStore.open(join(dir, "credentials.json"));
  const operator = await store.add("olga", "operator"); // a generated password: an HMAC check, not scrypt
  const viewer = await store.add("vic", "viewer");
  const refusals: string[] = [];
  const auth = apiAuthMiddleware(store, log, { backoff: new LoginBackoff(), refused: (r) => refusals.push(r.user) }) as RequestHandler;

  const audit = new AuditLog({ dataDir: dir, log });
  const audits: AuditEvent[] = [];
  const record = (e: AuditEvent) => (audits.push(e), audit.append(e));
  const automatic = new AutomaticPause({ file: join(dir, "automatic.json"), store: new StorageFile({ path: join(dir, "automatic.json"), onFault: () => undefined }), log, publish: async () => undefined, audit: record });
  const fleet = new FakeFleet({ hosts: [{ host: "alpha", priority: 1 }, { host: "beta", priority: 2 }], latencyMs: HOUR, expectedHead: COMMIT });
  const rollouts = new RolloutService({ fleet, store: new RolloutStore(dir), progressIntervalMs: 60_000 });
  rollouts.events.on("audit", record);
  const pulled = new Promise<void>((resolve) => fleet.onCommand((c) => c.op === "pull" && resolve()));
  const rolloutId = rollouts.start({ commit: COMMIT, strategy: { canary: ["alpha"], soakMs: 0, stepTimeouts: { pull: HOUR, switch: HOUR, test: HOUR } } }, "alice");
  await pulled;
  const merges: unknown[] = [];
  const converge = { mergeRevert: async (o: unknown) => (merges.push(o), { rolloutId: "r-revert", commit: COMMIT, prNumber: 3, converges: "r-failed" }) };
  const rechecks: number[] = [];
  const webhook = createWebhookHandler({ secret: SECRET, repository: "acme/fleet", logger: log, watcher: { checkNow: async () => void rechecks.push(1) } });

  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const app = (require("express") as () => Express)();
  mountHubApi(app, { auth, auditLog: audit, alsoRouting: [], converge: () => converge as never, automatic: () => automatic, rollouts: () => rollouts });
  app.post(WEBHOOK_PATH, webhook); // where the lockstep-webhook node mounts it (on Node-RED's httpNode)
  app.use(apiNotFound);
  app.use(apiErrorHandler(log));
  const server: Server = createServer((req, res) => app(req, res));
  await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
  const port = (server.address() as AddressInfo).port;
  const agent = new Agent({ keepAlive: true, maxSockets: 1 });

  const send = (r: Req): Promise<Answer> =>
    new Promise((resolve, reject) => {
      const req = request({ host: "127.0.0.1", port, agent, method: r.method, path: r.path, headers: r.headers ?? {} }, (res) => {
        const chunks: Buffer[] = [];
        res.on("data", (c: Buffer) => chunks.push(c));
        res.on("end", () => resolve({ status: res.statusCode ?? 0, type: String(res.headers["content-type"] ?? ""), body: Buffer.concat(chunks).toString("utf8") }));
      });
      req.on("error", reject);
      req.end(r.body);
    });
  const basic = (name: string, password: string) => `Basic ${Buffer.from(`${name}:${password}`).toString("base64")}`;
  const close = async () => {
    agent.destroy();
    await new Promise<void>((r) => server.close(() => r()));
    rollouts.close();
    fleet.close();
    rmSync(dir, { recursive: true, force: true });
  };
  return { send, close, audit, audits, automatic, merges, rechecks, refusals, rolloutId, operator: basic("olga", operator.password), viewer: basic("vic", viewer.password), basic };
}

/** A JSON answer: an object, with a string `error` when the status is an error. Returns the body. */
function jsonAnswer(a: Answer): Record<string, unknown> {
  expect(a.type, a.body).toMatch(/^application\/json/);
  const body = JSON.parse(a.body) as Record<string, unknown>;
  expect(typeof body).toBe("object");
  if (a.status >= 400) expect(typeof body.error, a.body).toBe("string");
  expect(a.status, a.body).toBeLessThan(500);
  return body;
}

/** A body as a client might send one: near a valid object, any JSON, any text, any bytes, or too large. */
const bodyNear = (base: Record<string, unknown>) =>
  fc.oneof(
    { weight: 3, arbitrary: near(base).map((v) => JSON.stringify(v)) },
    fc.string({ maxLength: 100 }),
    fc.uint8Array({ maxLength: 100 }).map((b) => Buffer.from(b)),
    fc.constantFrom("", "{", "null", "[]", '{"__proto__":{"pr_number":3}}', JSON.stringify({ pr_number: 1, pad: "x".repeat(70_000) })),
  );
const contentType = fc.constantFrom("application/json", "application/json; charset=utf-8", "text/plain", "application/x-www-form-urlencoded", "", "application/json; charset=latin-9", "APPLICATION/JSON");
const withType = (type: string, extra: Record<string, string> = {}): Record<string, string> => (type ? { "content-type": type, ...extra } : extra);

describe("fuzz: the hub's HTTP API", () => {
  let w: Awaited<ReturnType<typeof apiWorld>>;
  beforeAll(async () => {
    w = await apiWorld();
  }, 60_000);
  afterAll(async () => w?.close());

  it("POST bodies and content types on every hub route give the route's answer or a JSON 4xx; only an accepted request acts", async () => {
    const seen = new Map<string, number>();
    await fc.assert(
      fc.asyncProperty(
        fc.constantFrom("merge-revert", "resume", "cancel"),
        bodyNear({ pr_number: 3 }),
        contentType,
        async (route, body, type) => {
          w.automatic.rolloutEnded({ id: "r-failed", state: "failed", summary: "broke" } as never);
          const merges = w.merges.length;
          const audits = w.audits.length;
          const path = { "merge-revert": "/api/flake-updates/merge-revert", resume: "/api/automatic/resume", cancel: `/api/rollouts/${w.rolloutId}/hosts/beta/cancel` }[route];
          const a = await w.send({ method: "POST", path, headers: withType(type, { authorization: w.operator }), body });
          const answer = jsonAnswer(a);
          seen.set(`${route} ${a.status}`, (seen.get(`${route} ${a.status}`) ?? 0) + 1);
          const actions = w.audits.slice(audits).map((e) => e.action);
          if (route === "merge-revert") {
            expect([202, 400, 413, 415]).toContain(a.status);
            expect(w.merges.length - merges).toBe(a.status === 202 ? 1 : 0);
            if (a.status === 202) expect(answer).toMatchObject({ rollout_id: "r-revert" });
          }
          if (route === "resume") {
            expect([200, 400, 413, 415]).toContain(a.status);
            expect(actions).toEqual(a.status === 200 ? ["automatic.resumed"] : []);
            expect(w.automatic.paused).toBe(a.status !== 200);
          }
          if (route === "cancel") {
            // beta runs no step: nothing to cancel, whatever the body.
            expect([409, 400, 413, 415]).toContain(a.status);
            expect(actions).toEqual([]);
          }
          // A malformed JSON body is never acted on.
          const text = body.toString();
          const json = (() => {
            try {
              return JSON.parse(text) as unknown;
            } catch {
              return undefined;
            }
          })();
          if (/json/i.test(type) && text.length > 0 && json === undefined) expect(a.status).toBe(400);
          // Nor is a body of another type, which the parser does not read (it would count as no body).
          if (!/json/i.test(type) && body.length > 0) expect(a.status).toBe(415);
        },
      ),
      params,
    );
    // Every route answered both ways.
    for (const key of ["merge-revert 202", "merge-revert 400", "resume 200", "resume 400", "cancel 409", "cancel 400"]) expect(seen.get(key), key).toBeGreaterThan(0);
  });

  it("path parameters of the cancel route: 400, 404 or 409 as JSON, and no step is cancelled", async () => {
    const segment = fc.oneof(
      fc.constantFrom("alpha", "beta", "ghost", w?.rolloutId ?? "r-x", "r-nope", "Not_A_Host", "..", ".", "%", "%zz", "%2F", "a%00b", "__proto__", "x".repeat(300)),
      fc.string({ maxLength: 40 }).map(encodeURIComponent),
    );
    await fc.assert(
      fc.asyncProperty(segment, segment, fc.constantFrom("", "?x=1", "?host=alpha", "#frag"), async (id, host, tail) => {
        // The one real (rollout, running host) pair would cancel it: that is the route's job, tested elsewhere.
        fc.pre(!(id === w.rolloutId && host === "alpha"));
        const audits = w.audits.length;
        const a = await w.send({ method: "POST", path: `/api/rollouts/${id}/hosts/${host}/cancel${tail}`, headers: { authorization: w.operator } });
        jsonAnswer(a);
        expect([400, 404, 409]).toContain(a.status);
        expect(w.audits.slice(audits).filter((e) => e.action === "step.cancelled")).toEqual([]);
      }),
      params,
    );
    expect((await w.send({ method: "GET", path: `/api/audit?limit=500`, headers: { authorization: w.operator } })).status).toBe(200);
  });

  it("query strings on the GET routes: the events asked for or a JSON 400, and the audit log unchanged", async () => {
    const key = fc.constantFrom("limit", "before", "LIMIT", "x", "", "limit[]", "__proto__");
    const value = fc.oneof(fc.constantFrom("1", "100", "500", "501", "0", "-1", "1e2", " 5", "", "x".repeat(300)), fc.string({ maxLength: 20 }));
    const query = fc.array(fc.tuple(key, value), { maxLength: 4 }).map((pairs) => pairs.map(([k, v]) => `${encodeURIComponent(k)}=${encodeURIComponent(v)}`).join("&"));
    const raw = fc.constantFrom("limit=%", "limit=%zz", "&&&", "=", "limit", "limit=5&limit=6", "before=");
    await fc.assert(
      fc.asyncProperty(fc.constantFrom("/api/audit", "/api/whoami", "/api/"), fc.oneof(query, raw), async (path, q) => {
        const size = w.audit.recent(500).length;
        const a = await w.send({ method: "GET", path: `${path}?${q}`, headers: { authorization: w.operator } });
        const body = jsonAnswer(a);
        expect([200, 400]).toContain(a.status);
        if (path === "/api/audit" && a.status === 200) {
          expect(Array.isArray(body.events)).toBe(true);
          const limit = new URLSearchParams(q).get("limit");
          expect((body.events as unknown[]).length).toBeLessThanOrEqual(limit ? Number(limit) : 100);
        }
        expect(w.audit.recent(500).length).toBe(size);
      }),
      params,
    );
  });

  it("any Authorization header: the route runs only for the operator's exact credentials; else 401, 403 or 429 as JSON", async () => {
    const token = fc.oneof(fc.constantFrom("olga", "vic", "", "OLGA", "olga\u0000", "x".repeat(300)), fc.string({ maxLength: 20 }));
    const header = fc.oneof(
      // Mostly the real names (a wrong password for them is an HMAC check; any other name costs a scrypt).
      fc.tuple(fc.oneof({ weight: 4, arbitrary: fc.constantFrom("olga", "vic") }, token), token).map(([n, p]) => w.basic(n, p)),
      fc.constantFrom(w?.operator ?? "", w?.viewer ?? "").map((h) => h),
      fc.constantFrom("", "Basic", "Basic ", "Basic ====", "Basic %%%", "Bearer abc", "basic b2xnYQ==", `Basic ${Buffer.from(":").toString("base64")}`),
      fc.string({ maxLength: 60 }).map((s) => s.replace(/[^\x20-\x7e]/g, "")),
    );
    await fc.assert(
      fc.asyncProperty(header, async (authorization) => {
        w.automatic.rolloutEnded({ id: "r-failed", state: "failed", summary: "broke" } as never);
        const a = await w.send({ method: "POST", path: "/api/automatic/resume", headers: authorization ? { authorization } : {} });
        jsonAnswer(a);
        if (authorization === w.operator) expect([200, 429]).toContain(a.status);
        else {
          expect([401, 403, 429]).toContain(a.status);
          if (authorization === w.viewer) expect([403, 429]).toContain(a.status);
        }
        expect(w.automatic.paused).toBe(a.status !== 200);
      }),
      // An unknown user costs a dummy scrypt (~40 ms, so names cannot be probed): a third of the cases.
      { ...params, numRuns: Math.ceil(params.numRuns / 3) },
    );
  });

  it("webhook deliveries, headers included: a JSON answer with the handler's status, and a re-check only for a verified event of ours", async () => {
    const sign = (body: string) => `sha256=${createHmac("sha256", SECRET).update(body).digest("hex")}`;
    const pr = { action: "synchronize", number: 3, pull_request: { number: 3, head: { ref: "u", sha: "a".repeat(40) }, base: { ref: "main" } }, repository: { full_name: "acme/fleet" } };
    const statusEvent = { sha: "a".repeat(40), state: "success", context: "ci", repository: { full_name: "Acme/Fleet" } };
    const seen = new Set<number>();
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(near(pr).map((v) => JSON.stringify(v)), near(statusEvent).map((v) => JSON.stringify(v)), fc.string({ maxLength: 200 })),
        fc.constantFrom("pull_request", "status", "push", "ping", "check_run", "PULL_REQUEST", "", "x".repeat(300)),
        fc.constantFrom("good", "bad", "none", "sha1", "uppercase", "garbage"),
        fc.option(fc.string({ maxLength: 60 }).map((s) => s.replace(/[^\x20-\x7e]/g, "")), { nil: undefined }),
        contentType,
        fc.constantFrom("POST", "POST", "POST", "GET", "PUT"),
        async (body, event, signature, delivery, type, method) => {
          const rechecks = w.rechecks.length;
          const headers: Record<string, string> = withType(type, { "x-github-event": event });
          if (delivery !== undefined) headers["x-github-delivery"] = delivery;
          if (signature === "good") headers["x-hub-signature-256"] = sign(body);
          if (signature === "bad") headers["x-hub-signature-256"] = sign(`${body} `);
          if (signature === "sha1") headers["x-hub-signature-256"] = `sha1=${createHmac("sha1", SECRET).update(body).digest("hex")}`;
          if (signature === "uppercase") headers["x-hub-signature-256"] = sign(body).toUpperCase();
          if (signature === "garbage") headers["x-hub-signature-256"] = "sha256=zz";
          const a = await w.send({ method, path: WEBHOOK_PATH, headers, body: method === "GET" ? undefined : body });
          seen.add(a.status);
          if (method === "GET") {
            // No GET route: the API's JSON 404.
            expect(a.status).toBe(404);
            jsonAnswer(a);
            return;
          }
          const answer = jsonAnswer(a);
          expect([200, 202, 400, 401, 404, 413, 415]).toContain(a.status);
          if (method !== "POST") expect(a.status).toBe(404);
          if (a.status === 200 || a.status === 202) expect(["good"]).toContain(signature);
          await new Promise((r) => setImmediate(r)); // checkNow is started after the answer
          expect(w.rechecks.length - rechecks).toBe(a.status === 202 && answer.recheck === true ? 1 : 0);
        },
      ),
      params,
    );
    for (const status of [202, 400, 401, 415]) expect(seen.has(status), String(status)).toBe(true);
  });

  it("unknown /api/ paths and methods: a JSON 404 (or the auth's 401), never a state change", async () => {
    const path = fc.oneof(fc.constantFrom("/api", "/api/", "/api/nope", "/api/rollouts", "/api//audit", "/api/%zz", "/api/../metrics"), fc.string({ maxLength: 30 }).map((s) => `/api/${encodeURIComponent(s)}`));
    await fc.assert(
      fc.asyncProperty(path, fc.constantFrom("GET", "POST", "PUT", "DELETE", "PATCH"), async (p, method) => {
        const audits = w.audits.length;
        const merges = w.merges.length;
        const a = await w.send({ method, path: p, headers: { authorization: w.operator } });
        jsonAnswer(a);
        expect(w.audits.length).toBe(audits);
        expect(w.merges.length).toBe(merges);
      }),
      params,
    );
  });
});

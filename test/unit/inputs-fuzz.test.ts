/**
 * Property tests over the inputs that come from outside: MQTT payloads on every topic the hub's
 * fleet view and the agent read, webhook deliveries (body and headers), hub config files and the
 * merge-and-deploy request body. Each gives a correct result or a typed error: never a crash, a
 * hang, or a state change from input that was refused. (flake.lock files and PR bodies have
 * their own property test, protocol-flake-lock-fuzz.test.ts.)
 *
 * CI runs a fixed seed; `npm run fuzz` runs many more cases (FUZZ_RUNS, FUZZ_SEED).
 */
import { EventEmitter } from "node:events";
import { createHmac } from "node:crypto";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import fc from "fast-check";
import type { MqttClient } from "mqtt";
import { afterAll, describe, expect, it } from "vitest";
import { FleetView } from "../../rollout/fleet-view.js";
import { loadHubConfig } from "../../hub/config.js";
import { mergeShippedFlows } from "../../hub/node-red.js";
import { verifyAndParse, WebhookError } from "../../github/webhooks.js";
import { admissionRejection, readLooseIdentity } from "../../agent/admission.js";
import { Command, COMPARTMENTS, decodeJson, Topics } from "../../protocol/index.js";
import { ConfigError } from "../../protocol/errors.js";
import { FUZZ_RUNS, fuzzParams, near, payloadOf } from "../support/fuzz.js";

const params = fuzzParams(20261204);
const topics = new Topics();
const now = new Date("2026-12-04T12:00:00Z").toISOString();

/** Valid payloads to mutate, so the fuzzer reaches past JSON.parse into the schemas. */
const validInfo = { host: "alpha", hostname: "alpha", os: "nixos", agentVersion: "0.1.0", branch: "main", startedAt: now, updatedAt: now, hold: false };
const validJob = { id: "c-1", host: "alpha", op: "switch", state: "succeeded", summary: "ok", acceptedAt: now, finishedAt: now };
const validCommand = { id: "c-1", op: "refresh", args: {}, issuedAt: now, expiresAt: new Date(Date.parse(now) + 60_000).toISOString(), requestedBy: "alice" };

/** Availability's own words and a prototype-pollution attempt, besides what payloadOf always tries. */
const SPECIALS = ["online", "offline", '{"__proto__":{"x":1}}'];

/** The topics the fleet view reads, for a few hosts and job ids (some valid, some not). */
const host = fc.constantFrom("alpha", "beta", "Alpha", "", "a/b", "__proto__", "x".repeat(70));
const fleetTopic = fc.oneof(
  host.map((h) => `${topics.root}/hosts/${h}/availability`),
  host.map((h) => `${topics.root}/hosts/${h}/info`),
  fc.tuple(host, fc.constantFrom(...COMPARTMENTS, "nope")).map(([h, c]) => `${topics.root}/hosts/${h}/compartments/${c}`),
  fc.tuple(host, fc.constantFrom("c-1", "c-2", "", "..")).map(([h, id]) => `${topics.root}/hosts/${h}/jobs/${id}`),
  fc.constant(topics.expected()),
  fc.string({ maxLength: 60 }).map((s) => `${topics.root}/${s}`),
);

/** A stand-in MQTT client: FleetView only listens for "message" and subscribes. */
function fakeClient(): MqttClient & EventEmitter {
  const client = new EventEmitter() as MqttClient & EventEmitter;
  Object.assign(client, { subscribeAsync: async (subs: string[]) => subs.map((topic) => ({ topic, qos: 1 })), unsubscribeAsync: async () => undefined });
  return client;
}

describe("fuzz: MQTT payloads", () => {
  it("the hub's fleet view takes any payload on any topic it reads without throwing; a refused one changes nothing", async () => {
    const client = fakeClient();
    const fleet = new FleetView({ client, topics });
    await fleet.start();
    const state = () => JSON.stringify({ hosts: fleet.hosts(), expected: fleet.expected() });
    let refusedUnchanged = 0;
    fc.assert(
      fc.property(fleetTopic, fc.oneof(payloadOf(validInfo, SPECIALS), payloadOf(validJob, SPECIALS), payloadOf({ headCommit: "a".repeat(40) }, SPECIALS)), (topic, payload) => {
        const before = state();
        const beforeJob = fleet.job("alpha", "c-1");
        client.emit("message", topic, payload);
        const after = state();
        // What the schemas refuse leaves no trace: decode the same way the view does and compare.
        const parsed = topics.parse(topic);
        const json = (() => {
          try {
            return JSON.parse(payload.toString("utf8")) as unknown;
          } catch {
            return undefined;
          }
        })();
        if (payload.length > 0 && parsed && parsed.kind !== "availability" && json === undefined) {
          expect(after).toBe(before);
          expect(fleet.job("alpha", "c-1")).toEqual(beforeJob);
          refusedUnchanged++;
        }
      }),
      params,
    );
    expect(refusedUnchanged).toBeGreaterThan(0);
    await fleet.stop();
  });

  it("the agent's command path (loose identity, schema, admission) answers anything with a value or a reason", () => {
    fc.assert(
      fc.property(payloadOf(validCommand, SPECIALS), (payload) => {
        const identity = readLooseIdentity(payload);
        expect(typeof identity).toBe("object");
        const cmd = decodeJson(Command, payload);
        if (!cmd.ok) expect(typeof cmd.error).toBe("string");
        else {
          const why = admissionRejection(cmd.value, { now: Date.parse(now), stopping: false, selfUpdateBusy: () => undefined });
          expect(why === undefined || typeof why === "string").toBe(true);
        }
      }),
      params,
    );
  });
});

describe("fuzz: webhook deliveries", () => {
  const secret = "whsec-fuzz";
  const sign = (body: string) => `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
  const pr = { action: "opened", number: 3, pull_request: { number: 3, title: "flake.lock: Update", head: { ref: "u", sha: "a".repeat(40) }, base: { ref: "main" } }, repository: { full_name: "acme/fleet" } };

  it("any signed body and header set gives a WebhookEvent or a WebhookError (never another error)", async () => {
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(near(pr).map((v) => JSON.stringify(v)), fc.string({ maxLength: 300 })),
        fc.constantFrom("pull_request", "push", "status", "check_run", "ping", "", "x".repeat(300)),
        fc.option(fc.string({ maxLength: 60 }), { nil: undefined }),
        fc.constantFrom("good", "bad", "none", "array"),
        async (body, event, delivery, signature) => {
          const headers: Record<string, string | string[] | undefined> = { "x-github-event": event, "x-github-delivery": delivery };
          if (signature === "good") headers["x-hub-signature-256"] = sign(body);
          if (signature === "bad") headers["x-hub-signature-256"] = sign(body + "x");
          if (signature === "array") headers["x-hub-signature-256"] = [sign(body), sign(body)];
          try {
            const e = await verifyAndParse(body, headers, secret, { repository: "acme/fleet" });
            expect(signature === "good" || signature === "array").toBe(true);
            expect(typeof e.summary).toBe("string");
          } catch (err) {
            expect(err).toBeInstanceOf(WebhookError);
            if (signature === "bad" || signature === "none") expect((err as WebhookError).status).toBe(401);
          }
        },
      ),
      params,
    );
  });
});

describe("fuzz: hub config files", () => {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-config-fuzz-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  const base = { http: { port: 8080 }, automatic: { cron: "0 6 * * 1", timeZone: "UTC" }, rollout: { strategy: { soakMs: 1000 } }, audit: { keepFiles: 2 } };

  it("any config file loads or stops with a ConfigError", () => {
    const file = join(dir, "hub.json");
    fc.assert(
      fc.property(fc.oneof(near(base).map((v) => JSON.stringify(v)), fc.string({ maxLength: 200 })), (text) => {
        writeFileSync(file, text);
        try {
          const c = loadHubConfig({ file, dataDir: dir, env: {} });
          expect(c.http.port).toBeGreaterThanOrEqual(0);
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
        }
      }),
      { ...params, numRuns: Math.min(FUZZ_RUNS, 2000) },
    );
  });
});

describe("fuzz: HTTP bodies", () => {
  const flows = mergeShippedFlows(resolve(__dirname, "..", "..", "flows")) as Array<{ id: string; type: string; url?: string; func?: string; wires?: string[][] }>;
  const endpoint = flows.find((n) => n.type === "http in" && n.url === "/api/flake-updates/merge-and-deploy")!;
  const read = flows.find((n) => n.id === endpoint.wires![0]![0])!;
  const run = new Function("msg", read.func!) as (msg: Record<string, unknown>) => [Record<string, unknown> | null, Record<string, unknown> | null];

  it("the merge-and-deploy request step answers 400 or passes on only the fields it knows", () => {
    fc.assert(
      fc.property(fc.oneof(near({ pr_number: 12, hosts: ["alpha"] }), fc.jsonValue({ maxDepth: 3 })), (body) => {
        const [next, answer] = run({ payload: body, req: { lockstepUser: { name: "alice" } } });
        if (answer) {
          expect(next).toBeNull();
          expect(answer.statusCode).toBe(400);
          expect(typeof (answer.payload as { error: unknown }).error).toBe("string");
        } else {
          expect(next).toMatchObject({ checkOnly: true, requestedBy: "api:alice" });
          expect(next!.prNumber).toEqual((body as { pr_number: unknown }).pr_number);
        }
      }),
      params,
    );
  });
});

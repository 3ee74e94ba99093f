/**
 * Property tests over the outside inputs inputs-fuzz.test.ts does not reach: what the agent makes of
 * fleet/expected (its Lock, Agent and Git compartments), the agent's config file, and the hub's
 * preview service (fleet/expected and every host's preview topic). Each gives a correct result or a
 * typed error, never a crash; a refused payload changes nothing.
 *
 * CI runs a fixed seed; `npm run fuzz` runs many more cases (FUZZ_RUNS, FUZZ_SEED).
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { parseAgentConfig } from "../../agent/config.js";
import { readLockFacts } from "../../agent/facts.js";
import { agentCompartment, Compartment, decodeJson, FleetExpected, gitCompartment, lockCompartment, Topics } from "../../protocol/index.js";
import { ConfigError } from "../../protocol/errors.js";
import { PreviewService } from "../../rollout/preview-service.js";
import { fuzzParams, near, payloadOf } from "../support/fuzz.js";
import { FakePreviewMqtt, hostPreviewPr7, hostSnapshot, pendingPr7, PREVIEW_AT } from "../support/preview-mqtt.js";

const params = fuzzParams(20261205);
/** A prototype-pollution attempt on the field the agent compares. */
const POLLUTED = ['{"__proto__":{"lockHash":"x"}}'];
const topics = new Topics();
const SHA = "a".repeat(40);

const lockDiff = { added: [], removed: [], updated: [{ input: "nixpkgs", old: { type: "github", rev: "b".repeat(40), date: "2026-11-01" }, new: { type: "github", rev: "c".repeat(40), date: "2026-11-08" } }] };
const validExpected = {
  repo: "acme/fleet",
  branch: "main",
  headCommit: SHA,
  lockHash: "f".repeat(64),
  agentVersion: "0.1.0",
  pendingUpdate: { ...pendingPr7(SHA), lockDiff },
  updatedAt: PREVIEW_AT,
};

describe("fuzz: the agent's fleet/expected", () => {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-fuzz-expected-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));
  writeFileSync(join(dir, "flake.lock"), JSON.stringify({ version: 7, root: "root", nodes: { root: { inputs: { nixpkgs: "nixpkgs" } }, nixpkgs: { locked: { type: "github", owner: "NixOS", repo: "nixpkgs", rev: "b".repeat(40), lastModified: 1_764_000_000 } } } }));

  it("any payload is refused (the agent keeps its last expectation) or gives valid Agent, Lock and Git compartments", () => {
    let accepted = 0;
    fc.assert(
      fc.property(payloadOf(validExpected, POLLUTED), (payload) => {
        // As agent.ts: an empty payload clears the expectation, an invalid one is ignored.
        const d = decodeJson(FleetExpected, payload);
        if (!d.ok) {
          expect(typeof d.error).toBe("string");
          return;
        }
        accepted++;
        const now = new Date("2026-12-05T12:00:00Z");
        const lock = lockCompartment(readLockFacts(dir, d.value), now);
        const agent = agentCompartment({ version: "0.1.0", ...(d.value.agentVersion ? { expectedVersion: d.value.agentVersion } : {}) }, now);
        const git = gitCompartment({ head: SHA, branch: "main", expectedHead: d.value.headCommit, relation: d.value.headCommit === SHA ? "equal" : "unknown" }, now);
        for (const c of [lock, agent, git]) expect(Compartment.safeParse(c).success).toBe(true);
      }),
      params,
    );
    expect(accepted).toBeGreaterThan(0);
  });
});

describe("fuzz: the agent's config file", () => {
  const base = {
    host: "alpha",
    broker: { url: "mqtts://hub.example:8883", username: "alpha", passwordFile: "/run/secrets/lockstep" },
    repo: { url: "git@github.com:acme/fleet.git", branch: "main", checkoutDir: "/var/lib/lockstep/checkout" },
    stateDir: "/var/lib/lockstep",
    os: { kind: "nixos" },
  };

  it("any config loads or stops with a ConfigError naming the field", () => {
    let loaded = 0;
    fc.assert(
      fc.property(fc.oneof(near(base), fc.tuple(fc.constantFrom("broker", "repo", "os"), fc.jsonValue({ maxDepth: 2 })).map(([k, v]) => ({ ...base, [k]: v }))), (raw) => {
        try {
          const c = parseAgentConfig(raw, {}, "agent.json");
          expect(c.host).toMatch(/^[a-z0-9][a-z0-9_-]*$/);
          loaded++;
        } catch (err) {
          expect(err).toBeInstanceOf(ConfigError);
          expect((err as ConfigError).message).toMatch(/^agent\.json: /);
        }
      }),
      params,
    );
    expect(loaded).toBeGreaterThan(0);
  });
});

describe("fuzz: the hub's preview service", () => {
  const host = fc.constantFrom("alpha", "beta", "ghost", "", "__proto__");
  const pr = fc.constantFrom("7", "8", "0", "-1", "x");
  // hosts/<built on>/previews/<pr>/<host>: valid and invalid numbers and host ids.
  const previewTopic = fc.tuple(host, pr, host).map(([on, p, h]) => `${topics.root}/hosts/${on}/previews/${p}/${h}`);

  it("takes any payload on fleet/expected and every host preview topic without an error; a refused preview changes nothing", async () => {
    const client = new FakePreviewMqtt();
    const hosts = [hostSnapshot("alpha", true, { canary: true }), hostSnapshot("beta", true)];
    const errors: string[] = [];
    const log = pino({ level: "error" }, { write: (line: string) => errors.push(line) });
    const fleet = { hosts: () => hosts, host: (h: string) => hosts.find((x) => x.host === h), sendCommand: async () => "c-1" };
    const service = new PreviewService({ client, fleet: fleet as never, log, repo: "acme/fleet", now: () => new Date(PREVIEW_AT), policy: { buildOn: "canary", allowMoreThanLock: false, allowForks: false }, gating: "all" });
    await service.start();
    client.deliver(topics.expected(), { ...validExpected, pendingUpdate: pendingPr7(SHA) });
    await service.idle();
    let hostPreviews = 0;
    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.tuple(fc.constant(topics.expected()), payloadOf(validExpected, POLLUTED)),
          fc.tuple(previewTopic, payloadOf(hostPreviewPr7("alpha", SHA) as unknown as Record<string, unknown>, POLLUTED)),
        ),
        async ([topic, payload]) => {
          const before = JSON.stringify(service.state(7) ?? null);
          if (topics.parse(topic)?.kind === "hostPreview") hostPreviews++;
          client.listener!(topic, payload);
          await service.idle();
          expect(errors).toEqual([]);
          const parsed = (() => {
            try {
              return JSON.parse(payload.toString("utf8")) as unknown;
            } catch {
              return undefined;
            }
          })();
          if (parsed === undefined && payload.length > 0) expect(JSON.stringify(service.state(7) ?? null)).toBe(before);
        },
      ),
      params,
    );
    expect(hostPreviews).toBeGreaterThan(0); // the topics are ones the service really reads
    service.stop();
  });
});

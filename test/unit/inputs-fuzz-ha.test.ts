/**
 * Property tests over what the Home Assistant side sends the hub: the host buttons
 * (hosts/<host>/actions), the fleet buttons (hub/actions/<user>), HA's birth message
 * (homeassistant/status) and the preview summaries the bridge reads, through the real bridge, the
 * real fleet view and a real AutomaticPause; and the upstream bridge's rule for what it lets in.
 * Each input gives its one correct effect or none: never a thrown error, an error log line, a
 * command that was not asked for, or a resume from a refused or retained press.
 *
 * CI runs a fixed seed; `npm run fuzz` runs many more cases (FUZZ_RUNS, FUZZ_SEED).
 */
import { EventEmitter } from "node:events";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import type { MqttClient } from "mqtt";
import pino from "pino";
import { afterAll, describe, expect, it } from "vitest";
import { HomeAssistantBridge } from "../../ha/bridge.js";
import { HA_ACTIONS, parseHaAction } from "../../ha/discovery.js";
import { forwardsIn } from "../../hub/upstream-bridge.js";
import { buildPreviewSummary, Command, decodeJson, parseHubAction, PreviewSummary, Topics, type AuditEvent } from "../../protocol/index.js";
import { AutomaticPause } from "../../rollout/automatic-pause.js";
import { StorageFile } from "../../hub/storage-file.js";
import { FleetView } from "../../rollout/fleet-view.js";
import { fuzzParams, payloadOf } from "../support/fuzz.js";
import { hostPreviewPr7, hostSnapshot, pendingPr7, PREVIEW_AT } from "../support/preview-mqtt.js";

const params = fuzzParams(20261206);
const topics = new Topics();
const HEAD = "b".repeat(40);
const HOSTS = ["web-1", "db-1"];

const info = (host: string) => hostSnapshot(host, true, { os: "nixos" }).info!;

interface Published {
  topic: string;
  payload: string;
  retain: boolean;
}

/** A stand-in MQTT client that records what is published (the bridge and the fleet view publish, subscribe and listen). */
function recordingClient(): MqttClient & EventEmitter & { published: Published[] } {
  const client = new EventEmitter() as MqttClient & EventEmitter & { published: Published[] };
  const record = (topic: string, payload: string | Buffer, opts: { retain?: boolean } = {}) => client.published.push({ topic, payload: payload.toString(), retain: opts.retain === true });
  Object.assign(client, {
    published: [],
    connected: true,
    subscribeAsync: async (subs: string[]) => subs.map((topic) => ({ topic, qos: 1 })),
    unsubscribeAsync: async () => undefined,
    publish: (topic: string, payload: string | Buffer, opts: { retain?: boolean }, cb?: (err?: Error) => void) => (record(topic, payload, opts), cb?.(), client),
    publishAsync: async (topic: string, payload: string | Buffer, opts: { retain?: boolean }) => void record(topic, payload, opts),
  });
  return client;
}

/** Lets the bridge's birth timer (delay 0) and the command path's awaits run. Timers of one delay fire in order. */
const settle = () => new Promise((r) => setTimeout(r, 0));

/** HA's words, near misses of them (case, padding, joined, a control character), and anything. */
const wordPayload = (words: readonly string[]) =>
  fc.oneof(
    fc.constantFrom(...words).map((w) => Buffer.from(w)),
    fc.tuple(fc.constantFrom(...words), fc.constantFrom(" ", "\n", "\t", "\u0000", "\u00a0", "x", "")).map(([w, pad]) => Buffer.from(`${pad}${w}${pad}`)),
    fc.constantFrom(...words).map((w) => Buffer.from(w.toUpperCase())),
    fc.constantFrom(...words).map((w) => Buffer.from(`${w} ${w}`)),
    fc.constantFrom(...words).map((w) => Buffer.from(JSON.stringify({ action: w }))),
    fc.constantFrom(...words).map((w) => Buffer.from(w.padEnd(200, " "))),
    fc.string({ maxLength: 80 }).map((s) => Buffer.from(s)),
    fc.uint8Array({ maxLength: 80 }).map((b) => Buffer.from(b)),
  );

/** Host ids and broker user names in topics: known, unknown, wrong case, invalid, hostile. */
const hostLevel = fc.constantFrom(...HOSTS, "ghost", "WEB-1", "", "__proto__", "a b", "x".repeat(70));
const userLevel = fc.constantFrom("home-assistant", "olga", "", "__proto__", "BAD!", "x".repeat(70));

describe("fuzz: the Home Assistant bridge's inbound topics", () => {
  const dir = mkdtempSync(join(tmpdir(), "lockstep-fuzz-ha-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it("every message on a topic the bridge reads has its one correct effect or none, and never an error", async () => {
    const client = recordingClient();
    const errors: string[] = [];
    const logger = pino({ level: "error" }, { write: (line: string) => errors.push(line) });
    const fleet = new FleetView({ client, topics, logger });
    const audits: AuditEvent[] = [];
    const automatic = new AutomaticPause({ file: join(dir, "automatic.json"), store: new StorageFile({ path: join(dir, "automatic.json"), onFault: () => undefined }), log: logger, publish: async () => undefined, audit: (e) => audits.push(e) });
    const installs: string[] = [];
    const bridge = new HomeAssistantBridge({ client, topics, logger, fleet, automatic, rollouts: { installOnHost: (host: string) => (installs.push(host), "r-1") }, birthDelayMs: () => 0 });
    await fleet.start();
    await bridge.start();
    for (const h of HOSTS) client.emit("message", topics.info(h), Buffer.from(JSON.stringify(info(h))), { retain: true });
    client.emit("message", topics.expected(), Buffer.from(JSON.stringify({ repo: "acme/fleet", branch: "main", headCommit: HEAD, lockHash: "1".repeat(64), pendingUpdate: pendingPr7(HEAD), updatedAt: PREVIEW_AT })), { retain: true });
    await settle();
    expect(bridge.knownHosts()).toEqual([...HOSTS].sort());

    const summary = buildPreviewSummary(7, HEAD, HOSTS, [hostPreviewPr7("web-1", HEAD)]) as unknown as Record<string, unknown>;
    const pause = () => automatic.rolloutEnded({ id: "r-failed", state: "failed", summary: "broke" } as never);
    const seen = { commands: 0, installs: 0, resumes: 0, births: 0, summaries: 0 };

    await fc.assert(
      fc.asyncProperty(
        fc.oneof(
          fc.tuple(hostLevel.map((h) => topics.actions(h)), wordPayload(HA_ACTIONS)),
          fc.tuple(userLevel.map((u) => topics.hubActions(u)), wordPayload(["resume-automatic"])),
          fc.tuple(fc.constant(topics.haStatus()), wordPayload(["online", "offline"])),
          fc.tuple(fc.constantFrom("7", "8", "0", "x").map((pr) => `${topics.root}/fleet/preview-summaries/${pr}`), payloadOf(summary, [""])),
        ),
        fc.boolean(),
        async ([topic, payload], retain) => {
          pause();
          const pausedAudits = audits.length;
          client.published.length = 0;
          installs.length = 0;
          client.emit("message", topic, payload, { retain });
          await settle();

          expect(errors).toEqual([]);
          const parsed = topics.parse(topic);
          const text = payload.toString("utf8");
          const op = parseHaAction(text);
          // A host button: a valid Command to that host (pull names the fleet head), or Install's rollout; nothing else.
          const commands = client.published.filter((p) => p.topic.endsWith("/commands"));
          const byButton = parsed?.kind === "actions" && HOSTS.includes(parsed.host) ? op : null;
          if (byButton && byButton !== "install") {
            expect(commands.map((c) => c.topic)).toEqual([topics.commands(parsed!.kind === "actions" ? parsed!.host : "")]);
            const cmd = decodeJson(Command, Buffer.from(commands[0]!.payload));
            expect(cmd.ok && cmd.value.op).toBe(byButton);
            if (cmd.ok && cmd.value.op === "pull") expect(cmd.value.args).toMatchObject({ commit: HEAD });
            expect(commands[0]!.retain).toBe(false);
            seen.commands++;
          } else expect(commands).toEqual([]);
          expect(installs).toEqual(byButton === "install" && parsed?.kind === "actions" ? [parsed.host] : []);
          if (installs.length) seen.installs++;
          // A fleet button: resumes only on the exact word, live (a retained press would act on every restart).
          const resumes = audits.slice(pausedAudits).filter((e) => e.action === "automatic.resumed");
          if (parsed?.kind === "hubActions" && parseHubAction(payload) === "resume-automatic" && !retain) {
            expect(resumes.map((e) => e.actor)).toEqual([`mqtt:${parsed.user}`]);
            expect(automatic.paused).toBe(false);
            seen.resumes++;
          } else {
            expect(resumes).toEqual([]);
            expect(automatic.paused).toBe(true);
          }
          // Retained HA state: discovery again after a birth, an update entity after its PR's summary changed; always JSON.
          const retained = client.published.filter((p) => p.retain);
          for (const p of retained) expect(() => JSON.parse(p.payload) as unknown).not.toThrow();
          if (topic === topics.haStatus() && text.trim() === "online") {
            expect(retained.map((p) => p.topic)).toEqual(expect.arrayContaining([topics.haFleetDiscovery(), ...HOSTS.map((h) => topics.haDiscovery(h))]));
            seen.births++;
          } else if (parsed?.kind === "previewSummary") {
            const valid = payload.length === 0 || (decodeJson(PreviewSummary, payload).ok && (JSON.parse(text) as { pr: unknown }).pr === parsed.pr);
            if (!valid || parsed.pr !== 7) expect(retained.filter((p) => p.topic !== topics.automaticPause())).toEqual([]);
            for (const p of retained) expect([topics.automaticPause(), ...HOSTS.map((h) => topics.haUpdate(h))]).toContain(p.topic);
            if (valid && parsed.pr === 7) seen.summaries++;
          } else expect(retained.filter((p) => p.topic !== topics.automaticPause())).toEqual([]);
        },
      ),
      params,
    );
    // The generators reach every effect, not only refusals.
    expect(Object.values(seen).every((n) => n > 0)).toBe(true);
    await bridge.stop();
    await fleet.stop();
  });

  it("the upstream bridge lets in only HA's birth and button topics, whatever the topic string", () => {
    const level = fc.oneof(fc.constantFrom("+", "#", "", "..", "web-1", "home-assistant", "commands", "actions", "hub", "hosts", "v1", "lockstep", "homeassistant", "status"), fc.string({ maxLength: 12 }));
    fc.assert(
      fc.property(fc.array(level, { minLength: 1, maxLength: 7 }), fc.boolean(), (levels, rooted) => {
        const topic = (rooted ? [topics.root, ...levels] : levels).join("/");
        if (!forwardsIn(topics, topic)) return;
        expect(topic).not.toMatch(/[+#]/);
        const parsed = topics.parse(topic);
        expect(topic === topics.haStatus() || parsed?.kind === "actions" || parsed?.kind === "hubActions").toBe(true);
      }),
      params,
    );
  });
});

/**
 * The plain logic under the Node-RED nodes, without Node-RED: the gate's decision and its editor
 * fields, how the deploy node layers a RolloutSpec, and how the shipped flows are merged.
 */
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { describe, expect, it } from "vitest";
import { mergeShippedFlows } from "../../hub/node-red.js";
import { specFromNodeConfig } from "../../node-red-nodes/lib/deploy-spec.js";
import { decideGate, gateConfigFromDef, previewCheckFromDef, previewPolicy, previewStep } from "../../node-red-nodes/lib/gate-logic.js";
import { AutomaticReporter } from "../../node-red-nodes/lib/automatic-report.js";
import { AuditEvent, AutomaticState } from "../../protocol/index.js";
import { mergeSpecLayers, parseRolloutSpec } from "../../rollout/spec.js";

const SAT_0300_UTC = new Date("2026-11-21T03:00:00Z"); // a Saturday
const SAT_1200_UTC = new Date("2026-11-21T12:00:00Z");

describe("gate", () => {
  const config = gateConfigFromDef({ days: "sat,sun", start: "02:00", end: "05:00", timeZone: "UTC", hold: "beta, gamma" });

  it("passes inside the window and holds back outside it, saying which window", () => {
    expect(decideGate(config, {}, SAT_0300_UTC)).toEqual({ pass: true, held: [] });
    expect(decideGate(config, {}, SAT_1200_UTC)).toEqual({ pass: false, reason: "outside the maintenance window (sat,sun 02:00-05:00 UTC)", held: [] });
  });

  it("evaluates the window in its own time zone", () => {
    const berlin = gateConfigFromDef({ start: "02:00", end: "05:00", timeZone: "Europe/Berlin" });
    // 03:00 UTC is 04:00 in Berlin (winter): inside; 04:30 UTC is 05:30 there: outside.
    expect(decideGate(berlin, {}, SAT_0300_UTC).pass).toBe(true);
    expect(decideGate(berlin, {}, new Date("2026-11-21T04:30:00Z")).pass).toBe(false);
  });

  it("holds back a held host and removes held hosts from a list, with reasons", () => {
    expect(decideGate(config, { host: "beta" }, SAT_0300_UTC)).toMatchObject({ pass: false, reason: "beta is on the gate's hold list" });
    const fleetHeld = new Map([["delta", "disk replacement"]]);
    expect(decideGate(config, { hosts: ["alpha", "beta", "delta"], heldByFleet: fleetHeld }, SAT_0300_UTC)).toEqual({
      pass: true,
      hosts: ["alpha"],
      held: [
        { host: "beta", reason: "beta is on the gate's hold list" },
        { host: "delta", reason: "delta is held: disk replacement" },
      ],
    });
    expect(decideGate(config, { hosts: ["beta", "gamma"] }, SAT_0300_UTC)).toMatchObject({ pass: false, reason: "every host in msg.hosts is held" });
  });

  it("rejects bad editor fields with the field named", () => {
    expect(() => gateConfigFromDef({ start: "25:00", end: "05:00" })).toThrow(/maintenance window is invalid: start/);
    expect(() => gateConfigFromDef({ hold: "Alpha!" })).toThrow(/hold list: "Alpha!" is not a host id/);
    expect(() => gateConfigFromDef({ start: "02:00", end: "03:00", timeZone: "Mars/Olympus" })).toThrow(/unknown time zone "Mars\/Olympus"/);
  });
});

describe("gate step: preview", () => {
  const SHA = "a".repeat(40);
  it("passes what the previews allow, waits while they run, refuses what does not build", () => {
    expect(previewStep({ ok: true })).toEqual({ pass: true, step: "preview" });
    expect(previewStep({ ok: false, wait: true, reason: "beta: preview pending" })).toEqual({ pass: false, step: "preview", wait: true, guard: "preview-pending", reason: "beta: preview pending" });
    expect(previewStep({ ok: false, wait: false, reason: "gamma: does not build" })).toMatchObject({ pass: false, wait: false, guard: "preview-refused" });
  });

  it("takes its policy from the node, or the hub's gating ('hub'); no hub previews means nothing to gate on", () => {
    expect(previewCheckFromDef({})).toBe("off");
    expect(previewCheckFromDef({ preview: "hub" })).toBe("hub");
    expect(() => previewCheckFromDef({ preview: "sometimes" })).toThrow(/preview check: "sometimes" is not one of off, hub, all, canary/);
    expect(previewPolicy("off", "all")).toBe("ignore");
    expect(previewPolicy("hub", "canary")).toBe("canary");
    expect(previewPolicy("hub", undefined)).toBe("ignore");
    expect(previewPolicy("all", "ignore")).toBe("all");
  });

  it("reports every decision on fleet/automatic and audits each PR head's decision once", async () => {
    const states: AutomaticState[] = [];
    const events: AuditEvent[] = [];
    const reporter = new AutomaticReporter({ publishAutomatic: async (s) => void states.push(s), publishAudit: async (e) => void events.push(e), expected: () => ({ repo: "acme/fleet" }) });
    const base = { pr: 7, headSha: SHA, step: "preview", actor: "weekly flow" };
    await reporter.report({ ...base, decision: "waiting", reason: "beta: preview pending", code: "preview-pending" });
    await reporter.report({ ...base, decision: "waiting", reason: "beta: preview pending", code: "preview-pending" });
    await reporter.report({ ...base, decision: "refused", reason: "gamma: does not build", code: "preview-refused" });
    await reporter.report({ ...base, decision: "refused", reason: "gamma: does not build", code: "preview-refused" });
    expect(states.map((s) => s.decision)).toEqual(["waiting", "waiting", "refused", "refused"]);
    for (const s of states) AutomaticState.parse(s);
    expect(events.map((e) => [e.action, e.target, e.actor, e.details?.reason])).toEqual([
      ["merge.waiting", "acme/fleet#7", "weekly flow", "beta: preview pending"],
      ["merge.refused", "acme/fleet#7", "weekly flow", "gamma: does not build"],
    ]);
    await reporter.report({ ...base, decision: "passed", reason: "ok" });
    expect(events).toHaveLength(2);
  });
});

describe("deploy spec layers", () => {
  const commit = "c".repeat(40);

  it("reads the editor's strings into a partial spec and leaves blank fields out", () => {
    expect(specFromNodeConfig({ canary: "", soak: "", waves: "", onFailure: "", revertOnFailure: "" })).toEqual({});
    expect(
      specFromNodeConfig({ canary: "alpha, beta", soak: "90", waves: "25%", parallelism: "3", failureBudget: "1", onFailure: "rollback-all", revertOnFailure: "true", offline: "queue", offlineMinutes: "60" }),
    ).toEqual({
      strategy: { canary: ["alpha", "beta"], soakMs: 90_000, waves: { percent: 25 }, parallelism: 3 },
      failureBudget: { count: 1 },
      onFailure: "rollback-all",
      revertOnFailure: true,
      offline: { queue: 3_600_000 },
    });
    expect(specFromNodeConfig({ canary: "0", waves: "2" })).toEqual({ strategy: { canary: 0, waves: { size: 2 } } });
    expect(() => specFromNodeConfig({ waves: "half" })).toThrow(/wave size "half"/);
  });

  it("lets later layers win key by key, and the result passes the engine's own schema", () => {
    const hub = { strategy: { soakMs: 300_000, parallelism: 5 }, onFailure: "halt" };
    const node = specFromNodeConfig({ soak: "10" });
    const msg = { strategy: { parallelism: 1 } };
    const spec = parseRolloutSpec(mergeSpecLayers(hub, node, msg, { commit, selection: { hosts: ["alpha"] } }));
    expect(spec.strategy.soakMs).toBe(10_000);
    expect(spec.strategy.parallelism).toBe(1);
    expect(spec.onFailure).toBe("halt");
    expect(spec.selection).toEqual({ hosts: ["alpha"] });
    expect(() => parseRolloutSpec(mergeSpecLayers({ onFailur: "halt" }, { commit }))).toThrow(/onFailur/);
  });
});

describe("shipped flows", () => {
  it("merge into one flow file; shared config nodes may repeat only unchanged", () => {
    const flows = mergeShippedFlows(resolve(__dirname, "..", "..", "flows")) as Array<{ id: string; type: string }>;
    const types = new Set(flows.map((n) => n.type));
    for (const t of ["lockstep-fleet", "lockstep-github", "lockstep-schedule", "lockstep-pr-watch", "lockstep-pr-merge", "lockstep-deploy", "lockstep-rollback", "lockstep-webhook", "lockstep-host-command", "lockstep-gate", "lockstep-preview"]) {
      expect(types, t).toContain(t);
    }
    expect(new Set(flows.map((n) => n.id)).size).toBe(flows.length);

    const dir = mkdtempSync(join(tmpdir(), "lockstep-flows-"));
    try {
      writeFileSync(join(dir, "a.json"), JSON.stringify([{ id: "x", type: "lockstep-fleet", name: "one" }]));
      writeFileSync(join(dir, "b.json"), JSON.stringify([{ id: "x", type: "lockstep-fleet", name: "one" }]));
      expect(mergeShippedFlows(dir)).toHaveLength(1);
      writeFileSync(join(dir, "c.json"), JSON.stringify([{ id: "x", type: "lockstep-fleet", name: "two" }]));
      expect(() => mergeShippedFlows(dir)).toThrow(/node x twice with different content/);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("every flow node is wired to nodes that exist", () => {
    const flows = mergeShippedFlows(resolve(__dirname, "..", "..", "flows")) as Array<{ id: string; wires?: string[][]; links?: string[] }>;
    const ids = new Set(flows.map((n) => n.id));
    for (const n of flows) {
      for (const target of [...(n.wires ?? []).flat(), ...(n.links ?? [])]) expect(ids.has(target), `${n.id} → ${target}`).toBe(true);
    }
  });
});

describe("weekly flow", () => {
  type FlowNode = { id: string; type: string; z?: string; wires?: string[][] };
  const flows = mergeShippedFlows(resolve(__dirname, "..", "..", "flows")) as FlowNode[];
  const byId = new Map(flows.map((n) => [n.id, n]));

  it("previews the PR before it reaches the merge node", () => {
    // Walk from the schedule and the "run now" button, stopping at preview nodes: no merge node may be reachable that way.
    const starts = flows.filter((n) => n.z === "lockstep-tab-weekly" && (n.type === "lockstep-schedule" || n.type === "inject"));
    expect(starts.length).toBeGreaterThan(0);
    const seen = new Set<string>();
    const queue = starts.map((n) => n.id);
    while (queue.length) {
      const node = byId.get(queue.pop()!)!;
      if (seen.has(node.id)) continue;
      seen.add(node.id);
      expect(node.type, `${node.id} is reached before any preview`).not.toBe("lockstep-pr-merge");
      if (node.type !== "lockstep-preview") queue.push(...(node.wires ?? []).flat());
    }
    const preview = [...seen].map((id) => byId.get(id)!).find((n) => n.type === "lockstep-preview");
    expect(preview, "a preview node on the way").toBeDefined();
    // Then the gate's preview step (automatic mode merges only what the preview allows), then the merge.
    const [gate] = preview!.wires!.flat().map((id) => byId.get(id)! as typeof preview & { preview?: string });
    expect(gate).toMatchObject({ type: "lockstep-gate", preview: "hub" });
    expect(gate!.wires![0]!.map((id) => byId.get(id)!.type)).toEqual(["lockstep-pr-merge"]);
    expect(gate!.wires![1]!.map((id) => byId.get(id)!.id)).toEqual(["lockstep-weekly-wait-or-stop"]);
  });
});

describe("manual merge & deploy flow", () => {
  type FlowNode = { id: string; type: string; func?: string; wires?: string[][] };
  const flows = mergeShippedFlows(resolve(__dirname, "..", "..", "flows")) as FlowNode[];
  const byId = new Map(flows.map((n) => [n.id, n]));
  const endpoint = flows.find((n) => n.type === "http in" && (n as { url?: string }).url === "/api/flake-updates/merge-and-deploy")!;
  /** Run a function node's code as Node-RED would (msg in, what it returns out). */
  const runFunction = (node: FlowNode, msg: Record<string, unknown>) => new Function("msg", node.func!)(msg) as unknown;

  it("reaches the merge node only through a deploy node (the rollout is checked before anything merges)", () => {
    // Walk from the endpoint, stopping at deploy nodes: no merge node may be reachable that way.
    const seen = new Set<string>();
    const queue = [endpoint.id];
    while (queue.length) {
      const node = byId.get(queue.pop()!)!;
      if (seen.has(node.id)) continue;
      seen.add(node.id);
      expect(node.type, `${node.id} is reached before any deploy check`).not.toBe("lockstep-pr-merge");
      if (node.type !== "lockstep-deploy") queue.push(...(node.wires ?? []).flat());
    }
    expect([...seen].some((id) => byId.get(id)!.type === "lockstep-deploy")).toBe(true);
  });

  it("asks the deploy node for a check first, and merges only on its 'checked' answer", () => {
    const read = byId.get(endpoint.wires![0]![0]!)!;
    const [toDeploy] = runFunction(read, { payload: { pr_number: 12, hosts: ["web1"] }, req: { lockstepUser: { name: "alice" } } }) as [Record<string, unknown>];
    expect(toDeploy).toMatchObject({ prNumber: 12, hosts: ["web1"], checkOnly: true });
    const deploy = byId.get(read.wires![0]![0]!)!;
    expect(deploy.type).toBe("lockstep-deploy");
    const afterDeploy = deploy.wires![0]!.map((id) => byId.get(id)!).filter((n) => n.type === "function");
    const results = afterDeploy.map((n) => ({ n, checked: runFunction(n, { topic: "checked", checkOnly: true }), started: runFunction(n, { topic: "started", rolloutId: "r-1" }) }));
    const toMerge = results.filter((r) => r.checked !== null);
    expect(toMerge).toHaveLength(1);
    expect(toMerge[0]!.checked).not.toHaveProperty("checkOnly");
    expect(toMerge[0]!.n.wires![0]!.map((id) => byId.get(id)!.type)).toEqual(["lockstep-pr-merge"]);
    expect(toMerge[0]!.started).toBeNull();
  });

  it("passes an update's parts to the merge node and answers which PRs were merged and which not", () => {
    const read = byId.get(endpoint.wires![0]![0]!)!;
    const [toDeploy] = runFunction(read, { payload: { pr_number: 12, parts: [12, 13] }, req: {} }) as [Record<string, unknown>];
    expect(toDeploy).toMatchObject({ prNumber: 12, parts: [12, 13] });
    const deploy = byId.get(read.wires![0]![0]!)!;
    const answer = deploy.wires![0]!.map((id) => byId.get(id)!).find((n) => n.type === "function" && runFunction(n, { topic: "started" }) !== null)!;
    const started = { topic: "started", rolloutId: "r-2", commit: "c".repeat(40), prNumber: 12, merged: [{ number: 12, mergeCommitSha: "b".repeat(40) }], notMerged: [{ number: 13, reason: "PR #13 is not mergeable (405)" }] };
    expect((runFunction(answer, started) as { payload: unknown }).payload).toEqual({
      rollout_id: "r-2",
      job_id: "r-2",
      commit: "c".repeat(40),
      pr_number: 12,
      merged: [12],
      not_merged: [{ pr_number: 13, reason: "PR #13 is not mergeable (405)" }],
    });
  });
});

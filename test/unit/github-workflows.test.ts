import { describe, it, expect } from "vitest";
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { parse } from "yaml";
import { DetectionRules } from "../../github/config.js";
import { matchRules } from "../../github/detect.js";

const dir = join(__dirname, "..", "..", "nix", "github-workflows");
// Workflows are plain YAML data; only the fields checked here are typed.
type Step = { uses?: string; run?: string; with?: Record<string, string>; env?: Record<string, string> };
type Workflow = { on: Record<string, unknown>; jobs: Record<string, { steps: Step[] }> };
const load = (name: string) => parse(readFileSync(join(dir, name), "utf8")) as Workflow;
const steps = (w: Workflow) => Object.values(w.jobs).flatMap((j) => j.steps);
const updateStep = (w: Workflow) => steps(w).find((s) => s.uses?.startsWith("DeterminateSystems/update-flake-lock@"))!;
const labelsOf = (s: Step) => s.with!["pr-labels"]!.split("\n").map((l) => l.trim()).filter(Boolean);
const rules = DetectionRules.parse({});

describe("GitHub workflow templates match Lockstep's default detection rules", () => {
  it("weekly update-flake-lock: cron + dispatch, labels and branch Lockstep looks for", () => {
    const w = load("update-flake-lock.yml");
    expect(Object.keys(w.on).sort()).toEqual(["schedule", "workflow_dispatch"]);
    expect((w.on.schedule as { cron: string }[])[0]!.cron).toMatch(/^\S+ \S+ \* \* [0-6]$/); // weekly
    const s = updateStep(w);
    expect(labelsOf(s).sort()).toEqual([...rules.labels].sort());
    expect(s.with!.branch).toBe("update_flake_lock_action");
    expect(s.with!.token).toContain("secrets."); // not GITHUB_TOKEN: its PRs get no CI
    // Every rule would match the PR it opens, so one misconfigured rule does not lose it.
    const pr = { title: s.with!["pr-title"]!, labels: labelsOf(s).map((name) => ({ name })), head: { ref: s.with!.branch!, sha: "0".repeat(40) } };
    expect(matchRules(pr, rules)).toEqual(["labels", "title", "headBranch"]);
  });

  it("repository_dispatch pair: the tool repo sends bump-input, the flake repo opens update-nixfleet-<input>", () => {
    const tool = load("tool-repo-dispatch.yml");
    expect(Object.keys(tool.on)).toEqual(["push"]);
    const send = steps(tool).find((s) => s.run?.includes("/dispatches"))!;
    expect(send.run).toContain("event_type=bump-input");
    expect(send.run).toContain("client_payload[input]");

    const flake = load("bump-input-on-dispatch.yml");
    expect(flake.on).toEqual({ repository_dispatch: { types: ["bump-input"] } });
    const s = updateStep(flake);
    expect(s.with!.inputs).toBe("${{ github.event.client_payload.input }}");
    expect(s.with!.branch).toBe("update-nixfleet-${{ github.event.client_payload.input }}");
    expect(labelsOf(s).sort()).toEqual([...rules.labels].sort());
    // The branch a dispatch for input "tools" creates matches the head-branch rule.
    const pr = { title: "x", labels: [], head: { ref: s.with!.branch!.replace("${{ github.event.client_payload.input }}", "tools"), sha: "0".repeat(40) } };
    expect(matchRules(pr, rules)).toEqual(["headBranch"]);
    // The untrusted input name is validated before use.
    expect(steps(flake)[0]!.run).toMatch(/grep -Eq/);
  });
});

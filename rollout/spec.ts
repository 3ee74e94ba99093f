/**
 * What a rollout is asked to do (RolloutSpec) and what the planner made of it (RolloutPlan).
 *
 * A spec arrives from outside (a Node-RED msg, an HTTP body), so it is a zod schema: unknown keys
 * are rejected (a typo like "onfailure" must not silently become the default), and every default
 * is visible here.
 *
 * Ordering: hosts are deployed in ascending `info.priority` (priority 1 goes before priority
 * 100; ties by host id). "Highest priority" means the lowest number, i.e. the host that goes first.
 */
import { z } from "zod";
import { CommitSha, LockDiff } from "../protocol/schemas.js";
import { formatZodError } from "../protocol/payload.js";
import { RolloutSpecError } from "./errors.js";

const hostId = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "host ids are 1-63 chars of a-z, 0-9, - and _");
const ms = z.number().int().nonnegative();
const MINUTE = 60_000;

/** "all" (every known host), hosts carrying any of the tags, or an explicit list. */
export const HostSelection = z.union([
  z.literal("all"),
  z.object({ tags: z.array(z.string().min(1)).min(1) }).strict(),
  z.object({ hosts: z.array(hostId).min(1) }).strict(),
]);
export type HostSelection = z.infer<typeof HostSelection>;

export const WaveSize = z.union([
  z.object({ size: z.number().int().min(1) }).strict(),
  z.object({ percent: z.number().min(1).max(100) }).strict(),
]);
export type WaveSize = z.infer<typeof WaveSize>;

export const RolloutStrategy = z
  .object({
    /**
     * Canary hosts, deployed first, alone. A number picks that many (hosts flagged `canary` in their
     * info first, then in priority order); a list names them; 0 means no canary phase. Default: the
     * flagged canary hosts, or else the single highest-priority host.
     */
    canary: z.union([z.number().int().min(0), z.array(hostId).min(1)]).optional(),
    /** How long the canaries must stay healthy before the first wave starts. */
    soakMs: ms.default(5 * MINUTE),
    /** Wave size after the canary phase: a fixed number of hosts or a percentage of the rest. */
    waves: WaveSize.default({ percent: 50 }),
    /** At most this many hosts run steps at the same time within a wave. */
    parallelism: z.number().int().min(1).default(5),
    stepTimeouts: z
      .object({ pull: ms.default(10 * MINUTE), switch: ms.default(60 * MINUTE), test: ms.default(15 * MINUTE) })
      .strict()
      .default({ pull: 10 * MINUTE, switch: 60 * MINUTE, test: 15 * MINUTE }),
    /** After `test`: the host must be online, at the target commit, with green compartments within this time. */
    healthTimeoutMs: ms.default(5 * MINUTE),
    /**
     * A step without its job's final state asks its host (the agent publishes it again from its job
     * history) when the host comes back online, and after this long online, then at doubling
     * intervals (at most 8x). 0: ask only when the host comes back online.
     */
    askHostMs: ms.default(2 * MINUTE),
    /**
     * Compartments that must be "ok" for the health gate. Git and lock are judged against the fleet's
     * expected head, so drop them when deploying a commit that is not the head.
     */
    healthCompartments: z
      .array(z.enum(["agent", "git", "lock", "system", "tests"]))
      .default(["git", "lock", "system", "tests"]),
  })
  .strict();
export type RolloutStrategy = z.infer<typeof RolloutStrategy>;

/** How many failed hosts are tolerated before the failure policy applies: a count or a percentage. */
export const FailureBudget = z.union([
  z.number().int().min(0),
  z.object({ count: z.number().int().min(0) }).strict(),
  z.object({ percent: z.number().min(0).max(100) }).strict(),
]);
export type FailureBudget = z.infer<typeof FailureBudget>;

/** Hosts offline at their turn: skip them, wait for them up to `wait` ms, or queue the command with an expiry. */
export const OfflinePolicy = z.union([
  z.literal("skip"),
  z.object({ wait: ms }).strict(),
  z.object({ queue: z.number().int().min(1) }).strict(),
]);
export type OfflinePolicy = z.infer<typeof OfflinePolicy>;

export const FAILURE_POLICIES = ["halt", "rollback-failed", "rollback-all"] as const;

export const RolloutSpec = z
  .object({
    /** The exact commit to deploy (the merge commit), never "whatever main is now". */
    commit: CommitSha,
    selection: HostSelection.default("all"),
    strategy: RolloutStrategy.default(RolloutStrategy.parse({})),
    failureBudget: FailureBudget.default(0),
    /** What happens once the budget is exceeded (or a canary fails). */
    onFailure: z.enum(FAILURE_POLICIES).default("halt"),
    /** Also revert the merge on GitHub (through the injected revert callback) on failure. */
    revertOnFailure: z.boolean().default(false),
    offline: OfflinePolicy.default("skip"),
    /** Leave hosts alone outside their maintenance window. */
    respectWindows: z.boolean().default(true),
    /** For progress and history: the update PR and its lock diff. */
    prNumber: z.number().int().positive().optional(),
    lockDiff: LockDiff.optional(),
    /**
     * An update merged as several PRs: the merge commit of its first PR (`commit` is the last). A
     * revert restores flake.lock from before it, so it undoes every part, not only the last.
     */
    firstMergeCommit: CommitSha.optional(),
    /**
     * flake.lock's hash at `commit`, when known. A host already on this lock whose running generation
     * was built from its checkout is planned "pull only": after the pull its agent evaluates the
     * commit, and only when that is not the system it runs does it switch after all.
     */
    lockHash: z.string().regex(/^[0-9a-f]{64}$/, "a sha256 hex digest").optional(),
    /**
     * What the previews of the merged PR's head said, when they carry over to `commit` (the merged
     * flake.lock is the previewed head's, rollout/previews.ts previewPlanHints): hosts it showed
     * not affected are planned pull only (no switch, no tests, no reboot; the agent's evaluation
     * after the pull still decides), hosts that need a reboot are marked.
     */
    preview: z
      .object({
        pr: z.number().int().positive(),
        headSha: CommitSha,
        notAffected: z.array(hostId).max(10_000).default([]),
        reboot: z.record(hostId, z.array(z.string().max(100)).max(20)).default({}),
      })
      .strict()
      .optional(),
    /** The failed rollout this one brings back to a green fleet (after Lockstep's revert of its update landed). */
    converges: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/).optional(),
  })
  .strict();
/** A validated spec with every default filled in. */
export type RolloutSpec = z.infer<typeof RolloutSpec>;
/** What callers may pass: only `commit` is required. */
export type RolloutSpecInput = z.input<typeof RolloutSpec>;

/** Validate a spec from anywhere; throws RolloutSpecError naming the bad fields. */
type SpecLayer = Record<string, unknown>;
const isLayer = (v: unknown): v is SpecLayer => typeof v === "object" && v !== null && !Array.isArray(v);

/**
 * One spec from layers (the hub's defaults, then a node's or a request's own fields, then what is
 * fixed per rollout): later layers win; nested objects (strategy, stepTimeouts) merge key by key.
 */
export function mergeSpecLayers(...layers: SpecLayer[]): SpecLayer {
  const out: SpecLayer = {};
  for (const layer of layers) {
    for (const [key, value] of Object.entries(layer)) {
      out[key] = isLayer(value) && isLayer(out[key]) ? mergeSpecLayers(out[key] as SpecLayer, value) : value;
    }
  }
  return out;
}

export function parseRolloutSpec(input: unknown): RolloutSpec {
  const r = RolloutSpec.safeParse(input);
  if (!r.success) throw new RolloutSpecError(formatZodError(r.error));
  return r.data;
}

export const EXCLUSION_CODES = ["not-selected", "unknown-host", "no-info", "held", "window", "offline"] as const;

export const RolloutPhase = z.object({
  /** "canary", "wave-1", "wave-2", ..., "queued" */
  name: z.string(),
  kind: z.enum(["canary", "wave", "queued"]),
  hosts: z.array(hostId),
});
export type RolloutPhase = z.infer<typeof RolloutPhase>;

export const Exclusion = z.object({ host: z.string(), code: z.enum(EXCLUSION_CODES), reason: z.string() });
export type Exclusion = z.infer<typeof Exclusion>;

export const RolloutPlan = z.object({
  id: z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/),
  commit: CommitSha,
  createdAt: z.string(),
  spec: RolloutSpec,
  /** In execution order. Hosts inside a phase are in priority order. */
  phases: z.array(RolloutPhase),
  /** Hosts left out, each with the reason (held, outside window, offline, not selected, ...). */
  excluded: z.array(Exclusion),
  /** Included hosts that were offline when planned (offline policy wait or queue). */
  offlineAtPlan: z.array(hostId).default([]),
  /** Generation of each planned host when planned: what a rollback returns to if the host reports no other. */
  generationsAtPlan: z.record(z.string(), z.number().int()).default({}),
  /** Checkout commit of each planned host when planned: where a rollback puts the checkout back. */
  commitsAtPlan: z.record(z.string(), CommitSha).default({}),
  /** Hosts planned "pull only", with why (spec.lockHash, spec.preview): their running system is expected to match already. */
  pullOnly: z.record(z.string(), z.string()).default({}),
  /** Of those, the ones the preview showed not affected: no tests either (nothing they run changes). */
  notAffected: z.array(hostId).default([]),
  /** Hosts the preview says need a reboot after the switch, with what changed ("reboot needed: kernel, initrd"). */
  reboot: z.record(z.string(), z.string()).default({}),
});
export type RolloutPlan = z.infer<typeof RolloutPlan>;

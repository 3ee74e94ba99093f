/**
 * zod schemas for every payload on the wire. Types are inferred from them, so a payload that
 * passes `parse` is exactly the TypeScript type the rest of the code works with.
 */
import { z } from "zod";
import { COMMAND_OPS, COMPARTMENTS, HOST_ROLLOUT_STATES, JOB_STATES, OS_KINDS, ROLLOUT_STATES, STATUSES, TERMINAL_JOB_STATES } from "./enums.js";

// The plain lists live in enums.ts (no zod, so the page's browser module can use them too).
export { COMMAND_OPS, COMPARTMENTS, HOST_ROLLOUT_STATES, JOB_STATES, OS_KINDS, ROLLOUT_STATES, STATUSES, TERMINAL_JOB_STATES };

export const Status = z.enum(STATUSES);
export type Status = z.infer<typeof Status>;

export const CompartmentName = z.enum(COMPARTMENTS);
export type CompartmentName = z.infer<typeof CompartmentName>;

export const Availability = z.enum(["online", "offline"]);
export type Availability = z.infer<typeof Availability>;

export const OsKind = z.enum(OS_KINDS);
export type OsKind = z.infer<typeof OsKind>;

const isoDate = z.string().datetime({ offset: true });
export const CommitSha = z.string().regex(/^[0-9a-f]{40}$/, "expected a full 40-character git commit sha");
const hostId = z.string().regex(/^[a-z0-9][a-z0-9_-]{0,62}$/, "host ids are 1-63 chars of a-z, 0-9, - and _");
const safeId = z.string().regex(/^[A-Za-z0-9][A-Za-z0-9._-]{0,79}$/, "ids are 1-80 chars of A-Z, a-z, 0-9, '.', '_' and '-'");
/** A flake input name as `nix flake update <name>` accepts it: no shell metacharacters can pass. */
export const FlakeInputName = z.string().regex(/^[A-Za-z0-9_][A-Za-z0-9_'-]*(\/[A-Za-z0-9_][A-Za-z0-9_'-]*)*$/);
export const BranchName = z
  .string()
  .min(1)
  .max(200)
  .regex(/^(?!-)(?!.*\.\.)(?!.*\/\/)[A-Za-z0-9._\/-]+(?<!\.lock)(?<!\/)$/, "not a valid git branch name");

/** A weekly maintenance window, e.g. days ["sat","sun"], 02:00-05:00 in Europe/Berlin. */
export const MaintenanceWindow = z.object({
  days: z.array(z.enum(["mon", "tue", "wed", "thu", "fri", "sat", "sun"])).min(1).default(["mon", "tue", "wed", "thu", "fri", "sat", "sun"]),
  start: z.string().regex(/^([01]\d|2[0-3]):[0-5]\d$/, "HH:MM"),
  end: z.string().regex(/^([01]\d|2[0-4]):[0-5]\d$/, "HH:MM"),
  timeZone: z.string().default("UTC"),
});
export type MaintenanceWindow = z.infer<typeof MaintenanceWindow>;

export const HostInfo = z.object({
  host: hostId,
  hostname: z.string(),
  os: OsKind,
  agentVersion: z.string(),
  repo: z.string().optional(),
  branch: z.string(),
  commit: CommitSha.optional(),
  lockHash: z.string().optional(),
  generation: z.number().int().nonnegative().optional(),
  systemPath: z.string().optional(),
  tags: z.array(z.string()).default([]),
  location: z.string().optional(),
  priority: z.number().int().default(100),
  canary: z.boolean().default(false),
  hold: z.boolean().default(false),
  holdReason: z.string().optional(),
  maintenanceWindow: MaintenanceWindow.optional(),
  startedAt: isoDate,
  updatedAt: isoDate,
});
export type HostInfo = z.infer<typeof HostInfo>;

export const Compartment = z.object({
  status: Status,
  summary: z.string(),
  detail: z.record(z.string(), z.unknown()).optional(),
  checkedAt: isoDate,
  generation: z.number().int().nonnegative().optional(),
});
export type Compartment = z.infer<typeof Compartment>;

// ---------------------------------------------------------------------------------------------
// Commands (hub/operator → agent). Arguments are data, validated per op; never shell text.

export const CommandOp = z.enum(COMMAND_OPS);
export type CommandOp = z.infer<typeof CommandOp>;

/**
 * Arguments of the `preview` op: which PR head to evaluate, whether to build it, and (on a host
 * with the `builder` tag) which other hosts' configurations to preview as well.
 */
export const PreviewArgs = z
  .object({
    pr: z.number().int().positive(),
    headSha: CommitSha,
    /** Absent: the agent's configured default (on for the canary, off elsewhere). */
    build: z.boolean().optional(),
    /**
     * Builder hosts only: other hosts whose configurations to preview too, each with the system
     * it runs now (from its retained info) so "not affected" and the package diff can be told.
     */
    forHosts: z
      .array(z.object({ host: hostId, systemPath: z.string().regex(/^\/nix\/store\/[0-9a-z]{32}-[A-Za-z0-9+._?=-]+$/, "a Nix store path").optional() }).strict())
      .max(100)
      .optional(),
    /** Preview even if the PR changes more than flake.lock (the hub's config decides). */
    allowMoreThanLock: z.boolean().default(false),
  })
  .strict();
export type PreviewArgs = z.infer<typeof PreviewArgs>;

const empty = z.object({}).strict().default({});
export const CommandArgs = {
  refresh: empty,
  pull: z.object({ commit: CommitSha }).strict(),
  switch: z.object({ commit: CommitSha.optional() }).strict().default({}),
  test: empty,
  rollback: z.object({ generation: z.number().int().positive().optional() }).strict().default({}),
  /** Stop the running job; with `job`, only when that is the job running (a late stop never hits a later job). */
  stop: z.object({ job: safeId.optional() }).strict().default({}),
  restart: empty,
  "update-inputs": z
    .object({
      inputs: z.array(FlakeInputName).max(100).optional(),
      push: z.boolean().default(false),
      branch: BranchName.optional(),
    })
    .strict()
    .default({ push: false }),
  hold: z.object({ reason: z.string().max(500).optional() }).strict().default({}),
  release: empty,
  preview: PreviewArgs,
  /** The hub confirms a switch (by its job id): without it in time the agent rolls back by itself. */
  confirm: z.object({ job: safeId }).strict(),
  /**
   * The hub asks for one job's state (its final state is missing on the broker): the agent publishes
   * it again from its job history. A command that never arrived is marked seen (it will never run)
   * and reported `rejected` with `op`. Answered on the report's own job state, not retained.
   */
  report: z.object({ job: safeId, op: CommandOp.optional() }).strict(),
} as const satisfies Record<CommandOp, z.ZodType>;

const commandBase = {
  id: safeId,
  issuedAt: isoDate,
  expiresAt: isoDate,
  requestedBy: z.string().min(1).max(200),
  rolloutId: safeId.optional(),
};

export const Command = z.discriminatedUnion("op", [
  z.object({ ...commandBase, op: z.literal("refresh"), args: CommandArgs.refresh }),
  z.object({ ...commandBase, op: z.literal("pull"), args: CommandArgs.pull }),
  z.object({ ...commandBase, op: z.literal("switch"), args: CommandArgs.switch }),
  z.object({ ...commandBase, op: z.literal("test"), args: CommandArgs.test }),
  z.object({ ...commandBase, op: z.literal("rollback"), args: CommandArgs.rollback }),
  z.object({ ...commandBase, op: z.literal("stop"), args: CommandArgs.stop }),
  z.object({ ...commandBase, op: z.literal("restart"), args: CommandArgs.restart }),
  z.object({ ...commandBase, op: z.literal("update-inputs"), args: CommandArgs["update-inputs"] }),
  z.object({ ...commandBase, op: z.literal("hold"), args: CommandArgs.hold }),
  z.object({ ...commandBase, op: z.literal("release"), args: CommandArgs.release }),
  z.object({ ...commandBase, op: z.literal("preview"), args: CommandArgs.preview }),
  z.object({ ...commandBase, op: z.literal("confirm"), args: CommandArgs.confirm }),
  z.object({ ...commandBase, op: z.literal("report"), args: CommandArgs.report }),
]);
export type Command = z.infer<typeof Command>;
export type CommandOf<O extends CommandOp> = Extract<Command, { op: O }>;

export const JobStateName = z.enum(JOB_STATES);
export type JobStateName = z.infer<typeof JobStateName>;

export const JobState = z.object({
  id: z.string(),
  host: hostId,
  op: z.string(),
  state: JobStateName,
  summary: z.string(),
  error: z.string().optional(),
  exitCode: z.number().int().optional(),
  commit: CommitSha.optional(),
  rolloutId: z.string().optional(),
  requestedBy: z.string().optional(),
  generationBefore: z.number().int().optional(),
  generationAfter: z.number().int().optional(),
  /**
   * A switch that must be confirmed (a `confirm` command with this job's id) by this time, or the
   * agent rolls back by itself (magic rollback). Absent: nothing to confirm.
   */
  confirmBy: isoDate.optional(),
  acceptedAt: isoDate,
  startedAt: isoDate.optional(),
  finishedAt: isoDate.optional(),
});
export type JobState = z.infer<typeof JobState>;

export const JobOutput = z.object({
  id: z.string(),
  seq: z.number().int().nonnegative(),
  lines: z.array(z.object({ stream: z.enum(["stdout", "stderr", "info"]), text: z.string(), t: z.number() })),
});
export type JobOutput = z.infer<typeof JobOutput>;

// ---------------------------------------------------------------------------------------------
// flake.lock diff and the fleet's expectations

/** One side of an input change. `type` is the lock's (github, git, tarball, ...) or "follows". */
export const LockedRef = z.object({
  type: z.string(),
  rev: z.string().optional(),
  ref: z.string().optional(),
  lastModified: z.number().int().optional(),
  date: z.string().optional(),
  narHash: z.string().optional(),
  owner: z.string().optional(),
  repo: z.string().optional(),
  url: z.string().optional(),
  follows: z.string().optional(),
});
export type LockedRef = z.infer<typeof LockedRef>;

/**
 * How an input changed (for entries in `updated`; the whole shape is described in lock-diff.ts):
 * - updated: locked → locked (a new rev, date or source);
 * - follows-changed: follows 'a' → follows 'b';
 * - now-pinned: follows 'a' → its own locked input;
 * - now-follows: its own locked input → follows 'a'.
 */
export const CHANGE_KINDS = ["updated", "follows-changed", "now-pinned", "now-follows"] as const;
export const ChangeKind = z.enum(CHANGE_KINDS);
export type ChangeKind = z.infer<typeof ChangeKind>;

export const InputChange = z.object({
  /** Input path as Nix prints it: "nixpkgs", "home-manager/nixpkgs". */
  input: z.string(),
  /** Absent for `added` (and in entries stored before kinds existed). */
  kind: ChangeKind.optional(),
  old: LockedRef.optional(),
  new: LockedRef.optional(),
  /**
   * Inputs that follow this one and changed only because it did (their follows path is the
   * same): "home-manager/nixpkgs" under "nixpkgs". They are not listed on their own.
   */
  followers: z.array(z.string()).optional(),
});
export type InputChange = z.infer<typeof InputChange>;

export const LockDiff = z.object({
  added: z.array(InputChange),
  removed: z.array(InputChange),
  updated: z.array(InputChange),
});
export type LockDiff = z.infer<typeof LockDiff>;

export const CI_STATES = ["pending", "success", "failure", "unknown"] as const;
export const CiState = z.enum(CI_STATES);
export type CiState = z.infer<typeof CiState>;

/** One pull request of a pending update (see PendingUpdate.parts). */
export const PendingPart = z.object({
  number: z.number().int().positive(),
  title: z.string(),
  url: z.string(),
  headSha: CommitSha,
  headBranch: z.string(),
  /**
   * "owner/name" of the repository the PR's head is in (GitHub's head.repo.full_name); null when
   * that repository is gone (a deleted fork). Differs from the fleet's repository for a fork PR,
   * which is not previewed unless the hub's previews.allowForks says so. Absent: not known (a
   * publisher from before this field).
   */
  headRepo: z.string().max(200).nullable().optional(),
  openedAt: isoDate,
  lockDiff: LockDiff,
  /** sha256 of flake.lock at the PR's head, and its newest input date (unix seconds). */
  lockHash: z.string().optional(),
  lockLastModified: z.number().int().optional(),
  ci: z.object({ state: CiState, summary: z.string().optional() }),
  mergeable: z.boolean().nullable().optional(),
  mergeableState: z.string().optional(),
});
export type PendingPart = z.infer<typeof PendingPart>;

/** A lock-update PR that matched the rules but whose flake.lock cannot be read: never deployed. */
export const BrokenUpdate = z.object({
  number: z.number().int().positive(),
  title: z.string(),
  url: z.string(),
  reason: z.string(),
});
export type BrokenUpdate = z.infer<typeof BrokenUpdate>;

/**
 * THE pending lock update. Its own fields describe the PR merged first. Per-input updaters open
 * one PR per input at once: PRs that change different inputs make one update together, listed in
 * `parts` in merge order (parts[0] is this PR); PRs that change inputs an earlier one changes are
 * `superseded`.
 */
export const PendingUpdate = PendingPart.extend({
  superseded: z.array(z.number().int()).default([]),
  /** Every PR of this update in merge order, each with its own diff; absent or one entry: a single PR. */
  parts: z.array(PendingPart).optional(),
});
export type PendingUpdate = z.infer<typeof PendingUpdate>;

export const FleetExpected = z.object({
  repo: z.string(),
  branch: z.string(),
  headCommit: CommitSha,
  lockHash: z.string(),
  lockLastModified: z.number().int().optional(),
  agentVersion: z.string().optional(),
  pendingUpdate: PendingUpdate.nullable().default(null),
  /** Lock-update PRs whose flake.lock cannot be read (reported, never deployed). */
  brokenUpdates: z.array(BrokenUpdate).optional(),
  updatedAt: isoDate,
});
export type FleetExpected = z.infer<typeof FleetExpected>;

// ---------------------------------------------------------------------------------------------
// Rollouts, history and the audit log (hub → everyone)

export const RolloutStateName = z.enum(ROLLOUT_STATES);
export type RolloutStateName = z.infer<typeof RolloutStateName>;

export const HostRolloutStateName = z.enum(HOST_ROLLOUT_STATES);
export type HostRolloutStateName = z.infer<typeof HostRolloutStateName>;

/** Lockstep's revert of a failed rollout's update: a PR (number > 0), or in "commit" mode the commit (number 0). */
export const RevertPrRef = z.object({ number: z.number().int(), url: z.string(), commit: CommitSha.optional() });

export const HostRolloutState = z.object({
  host: hostId,
  phase: z.string(),
  state: HostRolloutStateName,
  reason: z.string().optional(),
  generationBefore: z.number().int().optional(),
  generationAfter: z.number().int().optional(),
  /** The host's checkout commit before this rollout: a rollback puts the checkout back there. */
  commitBefore: CommitSha.optional(),
  /** Planned without a switch, and why ("pull only: system already matches ..."); dropped when the agent's evaluation disagreed. */
  pullOnly: z.string().optional(),
  /** The update's preview says this host needs a reboot after its switch ("reboot needed: kernel"). */
  reboot: z.string().optional(),
  jobIds: z.array(z.string()).default([]),
  startedAt: isoDate.optional(),
  finishedAt: isoDate.optional(),
});
export type HostRolloutState = z.infer<typeof HostRolloutState>;

export const RolloutProgress = z.object({
  id: safeId,
  commit: CommitSha,
  state: RolloutStateName,
  summary: z.string(),
  requestedBy: z.string(),
  prNumber: z.number().int().optional(),
  lockDiff: LockDiff.optional(),
  phases: z.array(z.object({ name: z.string(), hosts: z.array(hostId) })),
  currentPhase: z.string().optional(),
  hosts: z.record(z.string(), HostRolloutState),
  counts: z.object({ total: z.number().int(), succeeded: z.number().int(), failed: z.number().int(), skipped: z.number().int() }),
  createdAt: isoDate,
  updatedAt: isoDate,
  finishedAt: isoDate.optional(),
  revertPr: RevertPrRef.optional(),
  /** The failed rollout this one brings back to a green fleet (Lockstep's revert of its update). */
  converges: safeId.optional(),
});
export type RolloutProgress = z.infer<typeof RolloutProgress>;

export const AuditEvent = z.object({
  id: z.string(),
  at: isoDate,
  actor: z.string(),
  action: z.string(),
  target: z.string().optional(),
  details: z.record(z.string(), z.unknown()).optional(),
});
export type AuditEvent = z.infer<typeof AuditEvent>;

/** The converge rollout as its failed rollout's history entry tells it. */
export const ConvergedBy = z.object({
  rolloutId: safeId,
  state: RolloutStateName,
  /** The revert commit the fleet converged onto (the revert PR's merge, or the revert committed directly). */
  commit: CommitSha,
  /** Who merged the revert and so started the convergence ("api:alice", "lockstep automatic (mergeReverts)"). */
  requestedBy: z.string(),
  finishedAt: isoDate,
  /** Hosts that only pulled: their system already was what the revert builds (rolled back, or never switched). */
  pullOnly: z.array(hostId).default([]),
});
export type ConvergedBy = z.infer<typeof ConvergedBy>;

/**
 * Retained on `fleet/history/<rolloutId>` when a rollout ends: what was deployed where, with the
 * lock diff, so "which hosts got last week's update?" has an answer after the rollout topic is gone.
 */
export const RolloutHistoryEntry = z.object({
  rolloutId: safeId,
  commit: CommitSha,
  state: RolloutStateName,
  summary: z.string(),
  requestedBy: z.string(),
  prNumber: z.number().int().optional(),
  lockDiff: LockDiff.optional(),
  startedAt: isoDate,
  finishedAt: isoDate,
  hosts: z.array(
    z.object({
      host: hostId,
      state: HostRolloutStateName,
      reason: z.string().optional(),
      generationBefore: z.number().int().optional(),
      generationAfter: z.number().int().optional(),
      /** Pulled only, no switch: its system already matched. */
      pullOnly: z.boolean().optional(),
    }),
  ),
  revertPr: RevertPrRef.optional(),
  /** The failed rollout this one brought back to a green fleet. */
  converges: safeId.optional(),
  /**
   * On a failed rollout's entry: the rollout that brought the fleet back onto Lockstep's revert,
   * added when it ends, so the failure, its revert and the convergence are one entry (one story).
   */
  convergedBy: ConvergedBy.optional(),
});
export type RolloutHistoryEntry = z.infer<typeof RolloutHistoryEntry>;

/**
 * Retained on `hub/status` by the hub at start: what a page needs to tell a new user what to do
 * next (no repository configured yet; how agents reach the broker).
 */
export const HubStatus = z.object({
  version: z.string(),
  startedAt: isoDate,
  github: z.object({
    configured: z.boolean(),
    /** "owner/repo" when configured. */
    repo: z.string().optional(),
  }),
  /** The embedded broker's MQTT TCP port agents connect to (absent with an external broker). */
  mqttPort: z.number().int().min(0).max(65535).optional(),
});
export type HubStatus = z.infer<typeof HubStatus>;

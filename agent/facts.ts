/**
 * Measuring the host: turns the checkout, flake.lock, profile and persisted results into the five
 * compartments with the pure rules from protocol/compartments.ts.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import {
  agentCompartment,
  gitCompartment,
  lockCompartment,
  lockHash,
  lockLastModified,
  parseFlakeLock,
  systemCompartment,
  testsCompartment,
  type Compartment,
  type CompartmentName,
  type FleetExpected,
  type LockFacts,
} from "../protocol/index.js";
import type { GitCheckout } from "./git.js";
import { readProfile } from "./profile.js";
import type { PersistedState } from "./state.js";

export interface Measurement {
  compartments: Record<CompartmentName, Compartment>;
  head?: string;
  lockHash?: string;
  generation?: number;
  systemPath?: string;
}

export interface MeasureInput {
  checkout: GitCheckout;
  profile: string;
  state: PersistedState;
  expected?: FleetExpected;
  version: string;
  /** The installed agent's version (selfCheck), when known: a different one means "restart the agent". */
  onDiskVersion?: string;
  /** Compartments a running job is changing: shown as "working". */
  working: ReadonlySet<CompartmentName>;
}

export function readLockFacts(checkoutDir: string, expected?: FleetExpected): LockFacts {
  const f: LockFacts = {};
  if (expected) {
    f.expectedLockHash = expected.lockHash;
    f.pendingUpdate = expected.pendingUpdate;
  }
  let bytes: Buffer;
  try {
    bytes = readFileSync(join(checkoutDir, "flake.lock"));
  } catch {
    return f;
  }
  f.lockHash = lockHash(bytes);
  try {
    const lm = lockLastModified(parseFlakeLock(bytes.toString("utf8")));
    if (lm !== undefined) f.lastModified = lm;
  } catch (e) {
    f.error = (e as Error).message;
  }
  return f;
}

function working(summary: string, base: Compartment): Compartment {
  return { ...base, status: "working", summary };
}

export async function measure(input: MeasureInput, now = new Date()): Promise<Measurement> {
  const { checkout, state, expected, working: busy } = input;
  const gitFacts = await checkout.facts(expected?.headCommit);
  if (busy.has("git")) gitFacts.working = true;
  const git = gitCompartment(gitFacts, now);

  const lockFacts = readLockFacts(checkout.dir, expected);
  let lock = lockCompartment(lockFacts, now);
  if (busy.has("lock")) lock = working("updating inputs…", lock);

  const profile = readProfile(input.profile);
  const head = gitFacts.head;
  const gen = profile.generation;
  const builtFrom = gen !== undefined ? state.generations[String(gen)]?.commit : undefined;
  const lastSwitch = state.lastSwitch;
  // Which commit is the running generation built from, as far as this agent knows?
  const systemCommit = builtFrom ?? (lastSwitch?.ok && lastSwitch.generation === gen ? lastSwitch.commit : undefined);
  // A failed switch is this checkout's failure only while the checkout is still at that commit.
  const failedHere = lastSwitch && !lastSwitch.ok && (!lastSwitch.commit || lastSwitch.commit === head);
  // What the checkout builds to, when known: from the last build of this commit, or an evaluation.
  const expectedSystemPath =
    state.lastBuild && state.lastBuild.commit === head ? state.lastBuild.path : state.evaluated && state.evaluated.commit === head ? state.evaluated.path : undefined;
  // The exact check wins over "which commit was the generation built from".
  const exactMatch = !!expectedSystemPath && expectedSystemPath === profile.path;
  let system = systemCompartment(
    {
      ...(profile.path ? { currentSystemPath: profile.path } : {}),
      ...(expectedSystemPath ? { expectedSystemPath } : {}),
      ...(gen !== undefined ? { generation: gen } : {}),
      ...(failedHere && lastSwitch ? { lastSwitch } : {}),
      ...(head && systemCommit && !exactMatch ? { checkoutChangedSinceSwitch: systemCommit !== head } : {}),
      ...(head && !systemCommit && !exactMatch && lastSwitch && !lastSwitch.ok && lastSwitch.commit !== head ? { checkoutChangedSinceSwitch: true } : {}),
      git,
      lock,
      working: busy.has("system"),
    },
    now,
  );
  if (systemCommit) system = { ...system, detail: { ...(system.detail ?? {}), builtFrom: systemCommit } };

  let tests = testsCompartment({ ...(gen !== undefined ? { generation: gen } : {}), ...(state.lastTest ? { lastRun: state.lastTest } : {}) }, now);
  if (busy.has("tests")) tests = working("running tests…", tests);

  let agent = agentCompartment(
    {
      version: input.version,
      ...(expected?.agentVersion ? { expectedVersion: expected.agentVersion } : {}),
      ...(input.onDiskVersion ? { onDiskVersion: input.onDiskVersion } : {}),
    },
    now,
  );
  if (busy.has("agent")) agent = working("restarting…", agent);

  return {
    compartments: { agent, git, lock, system, tests },
    ...(head ? { head } : {}),
    ...(lockFacts.lockHash ? { lockHash: lockFacts.lockHash } : {}),
    ...(gen !== undefined ? { generation: gen } : {}),
    ...(profile.path ? { systemPath: profile.path } : {}),
  };
}

/**
 * State publication: measures the host (facts.ts) and publishes the five compartments and the
 * host info, retained, only what changed. Measuring is serialised and coalesced: a burst of
 * triggers (commands, fleet/expected, the periodic timer) measures once more, not once each.
 * Also owns the installed-agent check (selfCheck), which feeds the Agent compartment and tells
 * whether a switch calls for a restart.
 */
import { realpathSync } from "node:fs";
import { hostname } from "node:os";
import type { Logger } from "pino";
import type { Compartment, CompartmentName, FleetExpected, HostInfo, Topics } from "../protocol/index.js";
import { selfCheckPathOf, type AgentConfig } from "./config.js";
import { measure } from "./facts.js";
import type { GitCheckout } from "./git.js";
import { InstalledAgentProbe, installedDiffers, type InstalledAgent } from "./installed.js";
import { profilePathOf } from "./os-profiles.js";
import type { PublishOptions } from "./session.js";
import type { StateStore } from "./state.js";

export interface PublicationDeps {
  config: AgentConfig;
  topics: Topics;
  log: Logger;
  checkout: GitCheckout;
  state: StateStore;
  env: NodeJS.ProcessEnv;
  version: string;
  startedAt: string;
  publish: (topic: string, payload: string, opts: PublishOptions) => void;
  /** The fleet's expectation (fleet/expected), when the hub published one. */
  expected: () => FleetExpected | undefined;
  /** Compartments the running job is changing (shown as working). */
  working: () => Set<CompartmentName>;
}

export class StatePublisher {
  private lastPublished = new Map<string, string>();
  private measuring: Promise<void> = Promise.resolve();
  private remeasureQueued = false;
  private readonly selfCheck: InstalledAgentProbe | undefined;
  /** Where this agent's code lives (a Nix store path in a packaged agent). */
  private readonly runningDir = safeRealpath(__dirname);
  private lastSelfCheckError: string | undefined;

  constructor(private readonly d: PublicationDeps) {
    const selfCheckPath = selfCheckPathOf(d.config);
    this.selfCheck = selfCheckPath ? new InstalledAgentProbe(selfCheckPath, d.config.selfCheck.timeoutSeconds * 1000, d.env) : undefined;
  }

  /** After a reconnect the broker may have lost what we published: publish everything again. */
  forgetPublished(): void {
    this.lastPublished.clear();
  }

  /** Recompute compartments and info; publishes what changed. Serialised, coalesced. */
  remeasure(): Promise<void> {
    if (this.remeasureQueued) return this.measuring;
    this.remeasureQueued = true;
    this.measuring = this.measuring.then(async () => {
      this.remeasureQueued = false;
      try {
        await this.measureAndPublish();
      } catch (e) {
        this.d.log.error({ err: (e as Error).message }, "measuring the host failed");
      }
    });
    return this.measuring;
  }

  private async measureAndPublish(): Promise<void> {
    const { config: c, topics } = this.d;
    const installed = await this.readInstalled();
    const expected = this.d.expected();
    const m = await measure({
      checkout: this.d.checkout,
      profile: profilePathOf(c),
      state: this.d.state.state,
      ...(expected ? { expected } : {}),
      version: this.d.version,
      ...(installed?.version ? { onDiskVersion: installed.version } : {}),
      working: this.d.working(),
    });
    for (const [name, comp] of Object.entries(m.compartments) as Array<[CompartmentName, Compartment]>) {
      this.publishIfChanged(topics.compartment(c.host, name), comp, (v) => ({ ...v, checkedAt: "" }));
    }
    const hold = this.d.state.state.hold;
    const info: HostInfo = {
      host: c.host,
      hostname: hostname(),
      os: c.os.kind,
      agentVersion: this.d.version,
      repo: redactUrl(c.repo.url),
      branch: c.repo.branch,
      ...(m.head ? { commit: m.head } : {}),
      ...(m.lockHash ? { lockHash: m.lockHash } : {}),
      ...(m.generation !== undefined ? { generation: m.generation } : {}),
      ...(m.systemPath ? { systemPath: m.systemPath } : {}),
      tags: c.tags,
      ...(c.location ? { location: c.location } : {}),
      priority: c.priority,
      canary: c.canary,
      hold: hold?.held ?? false,
      ...(hold?.held && hold.reason ? { holdReason: hold.reason } : {}),
      ...(c.maintenanceWindow ? { maintenanceWindow: c.maintenanceWindow } : {}),
      startedAt: this.d.startedAt,
      updatedAt: new Date().toISOString(),
    };
    this.publishIfChanged(topics.info(c.host), info, (v) => ({ ...v, updatedAt: "" }));
  }

  private publishIfChanged<T>(topic: string, value: T, normalise: (v: T) => unknown): void {
    const key = JSON.stringify(normalise(value));
    if (this.lastPublished.get(topic) === key) return;
    this.lastPublished.set(topic, key);
    this.d.publish(topic, JSON.stringify(value), { qos: 1, retain: true });
  }

  /** The installed agent (selfCheck), or undefined without one; a failure is logged when it changes. */
  private async readInstalled(): Promise<InstalledAgent | undefined> {
    if (!this.selfCheck) return undefined;
    const installed = await this.selfCheck.read();
    if (installed.error !== this.lastSelfCheckError) {
      if (installed.error) this.d.log.warn({ error: installed.error }, "cannot tell the installed agent's version");
      this.lastSelfCheckError = installed.error;
    }
    return installed;
  }

  /** After a successful switch or rollback: why the agent should restart now, if it should. */
  async restartReason(): Promise<string | undefined> {
    const mode = this.d.config.restartAfterSwitch;
    if (mode === "never") return undefined;
    const installed = await this.readInstalled();
    const differs = installed ? installedDiffers(installed, { version: this.d.version, dir: this.runningDir }) : undefined;
    if (differs) return differs;
    return mode === "always" ? "restartAfterSwitch is always" : undefined;
  }
}

function safeRealpath(p: string): string {
  try {
    return realpathSync(p);
  } catch {
    return p;
  }
}

/** Credentials in a repo URL (https://user:token@host/...) never reach a retained topic. */
function redactUrl(url: string): string {
  return url.replace(/^([a-z+]+:\/\/)[^@/]*@/i, "$1");
}

/**
 * Reporting a self-update run to the hub: a retained JobState (op "self-update") on the host's
 * jobs/<id> topic, which agents may publish under the broker's ACL. Reporting is best effort: a
 * hub that is down never fails or delays an update by more than the connect timeout.
 */
import { readFileSync } from "node:fs";
import mqtt, { type IClientOptions, type MqttClient } from "mqtt";
import type { Logger } from "pino";
import { JobState, readSecretFile, selfUpdateClientId, Topics } from "../../protocol/index.js";
import type { BrokerReportConfig } from "./config.js";
import type { RunRecord } from "./runlog.js";

export const SELF_UPDATE_OP = "self-update";
/** The check after booting a generation a self-update rebooted into (boot-check.ts). */
export const BOOT_CHECK_OP = "boot-check";

/** `confirmBy`: a switch the hub must confirm by then (the run waits for it: confirmation.ts). */
export function jobStateOf(record: RunRecord, phase: "running" | "finished", confirmBy?: string): JobState {
  const state = phase === "running" ? "running" : record.outcome === "succeeded" ? "succeeded" : record.outcome === "locked" ? "rejected" : "failed";
  return JobState.parse({
    id: record.id,
    host: record.host,
    op: record.kind === "boot-check" ? BOOT_CHECK_OP : SELF_UPDATE_OP,
    state,
    summary: phase === "running" ? `${record.kind ?? "self-update"} running` : record.summary,
    error: phase === "finished" ? record.error : undefined,
    requestedBy: record.kind === "boot-check" ? "boot check after a self-update reboot" : "self-update timer",
    generationBefore: record.generationBefore,
    generationAfter: phase === "finished" ? record.generationAfter : undefined,
    commit: phase === "finished" && record.commitAfter && /^[0-9a-f]{40}$/.test(record.commitAfter) ? record.commitAfter : undefined,
    acceptedAt: record.startedAt,
    startedAt: record.startedAt,
    finishedAt: phase === "finished" ? record.finishedAt : undefined,
    confirmBy,
  });
}

/** Publishes a self-update run as a job to the hub (the session agent's reporter is agent/jobs.ts' JobReporter). */
export interface RunReporter {
  publish(state: JobState): Promise<void>;
  close(): Promise<void>;
}

/** How the self-update connects (no reconnects unless asked), or null (logged) when the password cannot be read. */
export function brokerClientOptions(broker: BrokerReportConfig, host: string, log: Logger): IClientOptions | null {
  let password: string | undefined;
  if (broker.passwordFile) {
    try {
      password = readSecretFile(broker.passwordFile, "broker password");
    } catch (e) {
      log.warn({ passwordFile: broker.passwordFile, error: (e as Error).message }, "cannot read the broker password file; not reporting this run to the hub");
      return null;
    }
  }
  return {
    username: broker.username ?? host,
    password,
    // Not the agent's client id: the agent daemon may be connected at the same time.
    clientId: selfUpdateClientId(host),
    protocolVersion: 4,
    connectTimeout: broker.connectTimeoutMs,
    reconnectPeriod: 0,
    ca: broker.caFile ? readFileSync(broker.caFile) : undefined,
  };
}

/** Publish a job state retained at QoS 1; a failure is logged, never thrown (reporting is best effort). */
export async function publishJobState(client: MqttClient, topics: Topics, host: string, state: JobState, log: Logger): Promise<void> {
  try {
    await client.publishAsync(topics.job(host, state.id), JSON.stringify(state), { qos: 1, retain: true });
  } catch (e) {
    log.warn({ err: (e as Error).message, jobId: state.id }, "could not publish the self-update job state");
  }
}

/** Connect to the broker, or return null (logged) when it cannot be reached in time. */
export async function connectReporter(broker: BrokerReportConfig, host: string, topicPrefix: string, log: Logger): Promise<RunReporter | null> {
  const options = brokerClientOptions(broker, host, log);
  if (!options) return null;
  const topics = new Topics(topicPrefix);
  const client = mqtt.connect(broker.url, options);
  const connected = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), broker.connectTimeoutMs);
    client.once("connect", () => (clearTimeout(timer), resolve(true)));
    client.once("error", (e) => {
      log.warn({ url: broker.url, err: e.message }, "broker connection failed; not reporting this run to the hub");
      clearTimeout(timer);
      resolve(false);
    });
  });
  if (!connected) {
    client.end(true);
    return null;
  }
  return {
    publish: (state) => publishJobState(client, topics, host, state, log),
    async close() {
      await client.endAsync();
    },
  };
}

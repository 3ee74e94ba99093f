/**
 * Magic rollback for the standalone self-update, the same dead man's switch as the agent daemon's
 * (agent/magic-rollback.ts): a run that switched opens a NEW connection to the broker (the old one
 * may have outlived a network the switch broke), publishes its job as succeeded with `confirmBy`,
 * and waits until then for the hub's `confirm {job: <run id>}` on the host's commands topic (the
 * hub's rollout/confirmer.ts sends it once the job arrives: that arrival proves the host reaches
 * the broker). Without it, the run switches back to the previous generation and puts the checkout
 * back. The wait lives in this process, which holds the self-update lock meanwhile.
 */
import mqtt from "mqtt";
import type { Logger } from "pino";
import { Command, JobState, Topics, decodeJson } from "../../protocol/index.js";
import type { SelfUpdateConfig } from "./config.js";
import { brokerClientOptions, jobStateOf, publishJobState, type RunReporter } from "./report.js";
import type { RunRecord } from "./runlog.js";

export interface ConfirmationVerdict {
  /** Who confirmed (the confirm command's requestedBy); undefined: no confirmation in time. */
  confirmedBy?: string;
  /** Why there was none. */
  why?: string;
  /** A reporter on the connection made after the switch (null when none could be made). */
  reporter: RunReporter | null;
}

/** Publish the switched run (confirmBy) and wait for the hub's confirm until confirmTimeoutSeconds. */
export async function awaitHubConfirmation(cfg: SelfUpdateConfig, record: RunRecord, log: Logger): Promise<ConfirmationVerdict> {
  const broker = cfg.broker!;
  const seconds = cfg.confirmTimeoutSeconds;
  const why = `no confirmation within ${seconds} s`;
  const options = brokerClientOptions(broker, cfg.host, log);
  if (!options) return { why: `${why} (the broker password could not be read)`, reporter: null };
  const confirmBy = new Date(Date.now() + seconds * 1000).toISOString();
  const topics = new Topics(cfg.topicPrefix);
  const pending = jobStateOf({ ...record, outcome: "succeeded", summary: `${record.summary}; awaiting the hub's confirmation until ${confirmBy}` }, "finished", confirmBy);
  // Retried until the deadline: the switch may have restarted the network.
  const client = mqtt.connect(broker.url, { ...options, clean: true, reconnectPeriod: 1000 });
  let connected = false;
  const verdict = await new Promise<Omit<ConfirmationVerdict, "reporter">>((resolve) => {
    const timer = setTimeout(() => resolve({ why: connected ? why : `${why} (the broker could not be reached after the switch)` }), seconds * 1000);
    client.on("connect", () => {
      connected = true;
      void client
        .subscribeAsync(topics.commands(cfg.host), { qos: 1 })
        .then(() => publishJobState(client, topics, cfg.host, pending, log))
        .catch((e: unknown) => log.warn({ err: (e as Error).message }, "could not subscribe for the hub's confirmation"));
    });
    client.on("error", (e) => log.debug({ err: e.message }, "broker connection failed; retrying until the confirmation deadline"));
    client.on("message", (topic, payload) => {
      if (topic !== topics.commands(cfg.host)) return;
      const d = decodeJson(Command, payload);
      // Other commands are the agent daemon's; a confirm for another job is not ours either.
      if (!d.ok || d.value.op !== "confirm" || d.value.args.job !== record.id || Date.parse(d.value.expiresAt) <= Date.now()) return;
      const cmd = d.value;
      clearTimeout(timer);
      const now = new Date().toISOString();
      const done = JobState.parse({
        id: cmd.id,
        host: cfg.host,
        op: "confirm",
        state: "succeeded",
        summary: `confirmed self-update ${record.id}: keeping generation ${record.generationAfter}`,
        exitCode: 0,
        requestedBy: cmd.requestedBy,
        acceptedAt: now,
        startedAt: now,
        finishedAt: now,
      });
      void publishJobState(client, topics, cfg.host, done, log).then(() => resolve({ confirmedBy: cmd.requestedBy }));
    });
  });
  if (!connected) {
    client.end(true);
    return { ...verdict, reporter: null };
  }
  return {
    ...verdict,
    reporter: {
      // Bounded: after a cut that never heals, the run must still end.
      publish: (state) => Promise.race([publishJobState(client, topics, cfg.host, state, log), new Promise<void>((r) => setTimeout(r, broker.connectTimeoutMs * 2).unref())]),
      close: async () => (client.connected ? void (await client.endAsync()) : void client.end(true)),
    },
  };
}

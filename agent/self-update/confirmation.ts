/**
 * Magic rollback for the standalone self-update, the same dead man's switch as the agent daemon's
 * (agent/magic-rollback.ts): a run that switched opens a NEW connection to the broker (the old one
 * may have outlived a network the switch broke), publishes its job as succeeded with `confirmBy`,
 * and waits until then for the hub's `confirm {job: <run id>}` on the host's commands topic (the
 * hub's rollout/confirmer.ts sends it once the job arrives: that arrival proves the host reaches
 * the broker). Without it, the run switches back to the previous generation and puts the checkout
 * back.
 *
 * The deadline is persisted first (<stateDir>/self-update-confirmation.json, the shared
 * confirmation-deadline.ts, with the run record so far), and the connection keeps a persistent
 * session while it waits: a run killed during the window is finished by the next `lockstep-agent
 * self-update` (systemd restarts a killed one), which gets a confirmation queued meanwhile from that
 * session, waits out the rest of the window, or rolls back once it has passed.
 */
import mqtt from "mqtt";
import type { Logger } from "pino";
import { z } from "zod";
import { Command, CommitSha, JobState, Topics, decodeJson } from "../../protocol/index.js";
import { confirmationDeadline, msUntilDeadline, PendingConfirmation, PendingConfirmationFile } from "../confirmation-deadline.js";
import { statePaths } from "../config.js";
import type { SelfUpdateConfig } from "./config.js";
import { brokerClientOptions, jobStateOf, publishJobState, type RunReporter } from "./report.js";
import { RunRecord } from "./runlog.js";

/** A self-update's switch awaiting confirmation: the shared record, plus the run to finish. */
export const SelfUpdatePending = PendingConfirmation.extend({
  run: RunRecord,
  /** The process that waited (a later run finishing it says which one ended). */
  pid: z.number().int(),
});
export type SelfUpdatePending = z.infer<typeof SelfUpdatePending>;

export function selfUpdatePendingFile(stateDir: string, log?: Logger): PendingConfirmationFile<typeof SelfUpdatePending> {
  const file = statePaths(stateDir).selfUpdateConfirmation;
  return new PendingConfirmationFile(file, SelfUpdatePending, (why) => log?.error({ file, why }, "the self-update awaiting confirmation was unreadable; moved aside, not rolling back"));
}

/** The run id of a self-update switch awaiting its confirmation on this host, if one does (the daemon leaves its confirm to that run). */
export function selfUpdateAwaitingJob(stateDir: string): string | undefined {
  return selfUpdatePendingFile(stateDir).peek()?.job;
}

export interface ConfirmationVerdict {
  /** Who confirmed (the confirm command's requestedBy); undefined: no confirmation in time. */
  confirmedBy?: string;
  /** Why there was none. */
  why?: string;
  /** A reporter on the connection made after the switch (null when none could be made). */
  reporter: RunReporter | null;
}

/**
 * Publish the switched run (confirmBy) and wait for the hub's confirm until its deadline: a new one
 * (persisted before anything is published), or `resumed`'s, a run killed while it waited.
 */
export async function awaitHubConfirmation(cfg: SelfUpdateConfig, record: RunRecord, log: Logger, resumed?: SelfUpdatePending): Promise<ConfirmationVerdict> {
  const broker = cfg.broker!;
  const store = selfUpdatePendingFile(cfg.stateDir, log);
  const seconds = resumed?.timeoutSeconds ?? cfg.confirmTimeoutSeconds;
  const why = `no confirmation within ${seconds} s`;
  const confirmBy = resumed?.deadline ?? confirmationDeadline(seconds);
  if (!resumed) {
    const commitBefore = CommitSha.safeParse(record.commitBefore);
    store.write({
      job: record.id,
      deadline: confirmBy,
      timeoutSeconds: seconds,
      generationBefore: record.generationBefore!,
      generationAfter: record.generationAfter!,
      ...(commitBefore.success ? { commitBefore: commitBefore.data } : {}),
      run: record,
      pid: process.pid,
    });
  }
  const waitMs = msUntilDeadline({ deadline: confirmBy });
  // Past already (the run was killed and ended up restarted too late): a confirm would have expired too.
  if (waitMs === 0) return { why, reporter: null };
  const options = brokerClientOptions(broker, cfg.host, log);
  if (!options) return { why: `${why} (the broker password could not be read)`, reporter: null };
  const topics = new Topics(cfg.topicPrefix);
  const pending = jobStateOf({ ...record, outcome: "succeeded", summary: `${record.summary}; awaiting the hub's confirmation until ${confirmBy}` }, "finished", confirmBy);
  // Retried until the deadline: the switch may have restarted the network. A persistent session:
  // a confirm sent while this process is dead waits in it for the run that finishes this one.
  const client = mqtt.connect(broker.url, { ...options, clean: false, reconnectPeriod: 1000 });
  let connected = false;
  const verdict = await new Promise<Omit<ConfirmationVerdict, "reporter">>((resolve) => {
    const timer = setTimeout(() => resolve({ why: connected ? why : `${why} (the broker could not be reached after the switch)` }), waitMs);
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
      // Confirmed: forgotten before anything else, so no later run rolls it back.
      store.clear();
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
  // Nothing more to queue for this run: the session outlives the connection, its subscription must not.
  const leave = async () => {
    if (client.connected) await Promise.race([client.unsubscribeAsync(topics.commands(cfg.host)).catch(() => undefined), new Promise((r) => setTimeout(r, broker.connectTimeoutMs).unref())]);
  };
  if (!connected) {
    client.end(true);
    return { ...verdict, reporter: null };
  }
  return {
    ...verdict,
    reporter: {
      // Bounded: after a cut that never heals, the run must still end.
      publish: (state) => Promise.race([publishJobState(client, topics, cfg.host, state, log), new Promise<void>((r) => setTimeout(r, broker.connectTimeoutMs * 2).unref())]),
      close: async () => {
        await leave();
        if (client.connected) await client.endAsync();
        else client.end(true);
      },
    },
  };
}

/**
 * Waiting for one step's job, asking its host when the final state is missing.
 *
 * A job's final state can go missing on its way (a broker that acknowledged but did not store it,
 * a hub restart in between): waiting for it alone would wait out the step's whole timeout (an hour
 * for a switch) and then fail a host whose step succeeded. So while it waits, the engine asks the
 * host (`report {job}`: the agent publishes the job's state again from its job history) when the
 * host comes back online, and while it is online after `askEveryMs`, then at growing intervals.
 * The agent's answer arrives as the job's own state (the recorded outcome, or `rejected` for a
 * command that never reached it), or as a failed report when it no longer keeps that job.
 */
import { TERMINAL_JOB_STATES, type CommandOp, type JobState } from "../protocol/schemas.js";
import { newCommandId, type FleetChange, type FleetPort } from "./fleet-port.js";

/** Asks come at most this much further apart than `askEveryMs` (a long switch is asked a handful of times). */
const MAX_ASK_BACKOFF = 8;

export interface StepWait {
  fleet: FleetPort;
  host: string;
  jobId: string;
  /** The step's op, so a host that never got the command can report it (as rejected). */
  op: CommandOp;
  timeoutMs: number;
  /** First ask after this long online without a final state; 0: only when the host comes back online. */
  askEveryMs: number;
  /** Ask right away when the host is online (a step resumed after a hub restart). */
  askNow?: boolean;
  signal: AbortSignal;
  rolloutId: string;
  requestedBy: string;
  /** Each ask, as it is sent (the engine audits it). */
  onAsk?: (reason: string, reportId: string) => void;
  onAskFailed?: (err: unknown) => void;
}

/** What the host's job history says of the job when it keeps no state of it (the report failed). */
export class JobStateLost extends Error {}

const terminal = (j: JobState | undefined): j is JobState => !!j && TERMINAL_JOB_STATES.includes(j.state);

/**
 * The job's terminal state: the port's own wait (FleetPort.waitForJob) while the host is asked.
 * Rejects with WaitTimeoutError after timeoutMs, WaitAbortedError when the signal aborts,
 * JobStateLost when the host answered that it no longer keeps the job's state.
 */
export async function waitForStepJob(w: StepWait): Promise<JobState> {
  const { fleet, host, jobId } = w;
  if (w.signal.aborted || terminal(fleet.job(host, jobId))) return fleet.waitForJob(host, jobId, w.timeoutMs, w.signal);
  // Our own signal, so the wait also ends when the host says the job's state is lost.
  const stop = new AbortController();
  const forward = () => stop.abort();
  w.signal.addEventListener("abort", forward, { once: true });
  const asking = askWhileWaiting(w);
  try {
    return await Promise.race([fleet.waitForJob(host, jobId, w.timeoutMs, stop.signal), asking.lost]);
  } finally {
    asking.stop();
    w.signal.removeEventListener("abort", forward);
    stop.abort();
  }
}

/** Asks the host for the job's state (see the top); `lost` rejects with JobStateLost when it keeps none. */
function askWhileWaiting(w: StepWait): { lost: Promise<never>; stop(): void } {
  const { fleet, host, jobId } = w;
  let lose!: (err: JobStateLost) => void;
  const lost = new Promise<never>((_, reject) => (lose = reject));
  const online = () => fleet.host(host)?.availability === "online";
  let wasOnline = online();
  let asking: string | undefined;
  let backoff = 1;
  let askTimer: NodeJS.Timeout | undefined;

  const ask = (reason: string) => {
    if (asking || !online()) return;
    const id = newCommandId();
    asking = id;
    w.onAsk?.(reason, id);
    // Short expiry: an ask queued while the host is away is replaced by the next one.
    const expiresAt = new Date(Date.now() + Math.max(60_000, w.askEveryMs));
    fleet.sendCommand(host, "report", { job: jobId, op: w.op }, { id, rolloutId: w.rolloutId, expiresAt, requestedBy: w.requestedBy }).catch((e: unknown) => {
      if (asking === id) asking = undefined;
      w.onAskFailed?.(e);
    });
  };
  const scheduleAsk = () => {
    clearTimeout(askTimer);
    if (w.askEveryMs <= 0) return;
    askTimer = setTimeout(() => {
      ask(`no final state after ${Math.round((w.askEveryMs * backoff) / 1000)} s`);
      backoff = Math.min(MAX_ASK_BACKOFF, backoff * 2);
      scheduleAsk();
    }, w.askEveryMs * backoff);
  };

  const unsubscribe = fleet.onChange((c: FleetChange) => {
    if (c.host !== host) return;
    if (c.kind === "availability") {
      const on = online();
      if (on && !wasOnline) {
        // Back online: what it finished meanwhile may not have reached us. Ask now, then as usual.
        backoff = 1;
        ask("the host is back online");
        scheduleAsk();
      }
      wasOnline = on;
      return;
    }
    if (c.kind !== "job" || c.jobId !== asking) return;
    const answer = fleet.job(host, asking);
    if (!terminal(answer)) return;
    asking = undefined;
    // Succeeded: the job's state was published again (the port's wait sees it). Rejected: an agent
    // without `report`. Failed: the host got the command but keeps no state of it.
    if (answer.state === "failed") lose(new JobStateLost(`the host keeps no state of ${jobId}: ${answer.summary}`));
  });
  scheduleAsk();
  if (w.askNow) ask("the hub restarted while the step ran");
  return {
    lost,
    stop: () => {
      clearTimeout(askTimer);
      unsubscribe();
    },
  };
}

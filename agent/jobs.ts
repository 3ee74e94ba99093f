/**
 * Publishing one job's life: its retained state on jobs/<id> and its output, batched, on
 * jobs/<id>/output (every 200 ms or 50 lines, whichever comes first).
 */
import { JobOutput, JobState, TERMINAL_JOB_STATES, type JobStateName } from "../protocol/index.js";

export const OUTPUT_FLUSH_MS = 200;
export const OUTPUT_MAX_LINES = 50;
/** Very long lines are cut: a job's output is for reading, not for transferring files. */
const MAX_LINE_CHARS = 4000;

export type Publish = (topic: string, payload: string, opts: { qos: 0 | 1; retain: boolean }) => void;

export class JobReporter {
  private pending: JobOutput["lines"] = [];
  private seq = 0;
  private timer: NodeJS.Timeout | undefined;
  state: JobState;

  constructor(
    private readonly publish: Publish,
    private readonly stateTopic: string,
    private readonly outputTopic: string,
    initial: JobState,
  ) {
    this.state = JobState.parse(initial);
  }

  get terminal(): boolean {
    return TERMINAL_JOB_STATES.includes(this.state.state);
  }

  /** Publish a new state (retained). Once terminal, the job's state no longer changes. */
  set(state: JobStateName, patch: Partial<Omit<JobState, "id" | "host" | "op" | "state">> = {}): void {
    if (this.terminal) return;
    if (TERMINAL_JOB_STATES.includes(state)) this.flush();
    const now = new Date().toISOString();
    const next: JobState = { ...this.state, ...patch, state };
    if (state === "running" && !next.startedAt) next.startedAt = now;
    if (TERMINAL_JOB_STATES.includes(state) && !next.finishedAt) next.finishedAt = now;
    this.state = JobState.parse(next);
    this.publish(this.stateTopic, JSON.stringify(this.state), { qos: 1, retain: true });
  }

  line(stream: "stdout" | "stderr" | "info", text: string, t = Date.now()): void {
    this.pending.push({ stream, text: text.length > MAX_LINE_CHARS ? `${text.slice(0, MAX_LINE_CHARS)}…` : text, t });
    if (this.pending.length >= OUTPUT_MAX_LINES) this.flush();
    else if (!this.timer) this.timer = setTimeout(() => this.flush(), OUTPUT_FLUSH_MS);
  }

  flush(): void {
    if (this.timer) clearTimeout(this.timer);
    this.timer = undefined;
    if (this.pending.length === 0) return;
    const batch: JobOutput = { id: this.state.id, seq: this.seq++, lines: this.pending };
    this.pending = [];
    this.publish(this.outputTopic, JSON.stringify(batch), { qos: 0, retain: false });
  }
}

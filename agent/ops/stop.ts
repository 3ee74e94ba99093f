/** `stop`: cancel the running job (only `job`, when named) and wait (bounded) until it has ended. */
import type { RunningJob } from "../job.js";

const STOP_WAIT_MS = 15_000;

export async function stop(current: RunningJob | undefined, job?: string): Promise<string> {
  if (job !== undefined && current?.id !== job) return `job ${job} is not running${current ? ` (busy with ${current.op} ${current.id})` : ""}: nothing stopped`;
  if (!current) return "nothing to stop";
  current.cancelled = true;
  current.cancel();
  await Promise.race([current.finished, new Promise((r) => setTimeout(r, STOP_WAIT_MS).unref())]);
  return `cancelled ${current.op} ${current.id}`;
}

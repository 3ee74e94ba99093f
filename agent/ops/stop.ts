/** `stop`: cancel the running job and wait (bounded) until it has ended. */
import type { RunningJob } from "../job.js";

const STOP_WAIT_MS = 15_000;

export async function stop(current: RunningJob | undefined): Promise<string> {
  if (!current) return "nothing to stop";
  current.cancelled = true;
  current.cancel();
  await Promise.race([current.finished, new Promise((r) => setTimeout(r, STOP_WAIT_MS).unref())]);
  return `cancelled ${current.op} ${current.id}`;
}

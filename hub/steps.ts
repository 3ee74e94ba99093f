/**
 * The hub starts as a list of named steps, each returning how to undo itself. Stopping runs the
 * undo functions backwards; a step that hangs while stopping is given up on after a while, so one
 * stuck part never keeps the process (and the parts before it) from stopping.
 */
import type { Logger } from "pino";

export type StopFn = () => Promise<void>;

export interface StartStep {
  /** Shown in the log ("stopped", with how long it took) and in errors. */
  name: string;
  /** Start this part; return its stop, or nothing when there is nothing to undo. */
  start(): Promise<StopFn | void>;
}

export interface StartedSteps {
  /** The stop functions still to run, in start order. */
  readonly names: readonly string[];
  /** Stop every started step, last first. Safe to call twice. */
  stop(): Promise<void>;
}

export const STOP_STEP_TIMEOUT_MS = 5000;

/**
 * Run the steps in order. When one throws, the steps started before it are stopped (backwards)
 * and the error is rethrown.
 */
export async function startSteps(steps: readonly StartStep[], log: Logger, stopTimeoutMs = STOP_STEP_TIMEOUT_MS): Promise<StartedSteps> {
  const started: Array<{ name: string; stop: StopFn }> = [];
  const stopAll = async () => {
    while (started.length > 0) {
      const { name, stop } = started.pop()!;
      const t0 = Date.now();
      let timer: NodeJS.Timeout | undefined;
      const timeout = new Promise<void>((resolve) => {
        timer = setTimeout(() => {
          log.error({ step: name }, `${name} did not stop within ${stopTimeoutMs} ms; going on`);
          resolve();
        }, stopTimeoutMs);
      });
      await Promise.race([stop().catch((err: unknown) => log.error({ err, step: name }, "error while stopping")), timeout]);
      clearTimeout(timer);
      log.debug({ step: name, ms: Date.now() - t0 }, "stopped");
    }
  };
  for (const step of steps) {
    try {
      const stop = await step.start();
      if (stop) started.push({ name: step.name, stop });
    } catch (err) {
      await stopAll();
      throw err;
    }
  }
  return {
    get names() {
      return started.map((s) => s.name);
    },
    stop: stopAll,
  };
}

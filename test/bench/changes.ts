/**
 * The change-latency measurement the fleet and cluster benchmarks share: compartment changes from
 * simulated hosts (20 in flight), each timed from its publish to its arrival at a hub-like
 * subscriber.
 */
import type { MqttClient } from "mqtt";
import { Topics } from "../../protocol/index.js";
import type { SimulatedHost } from "./sim-host.js";

const topics = new Topics();
const CHANGE_CONCURRENCY = 20;

/** Run `task` for 0..count-1 with at most `limit` running at once. */
export async function pool(count: number, limit: number, task: (i: number) => Promise<void>): Promise<void> {
  let next = 0;
  const worker = async () => {
    while (next < count) await task(next++);
  };
  await Promise.all(Array.from({ length: Math.min(limit, count) }, worker));
}

export function withTimeout<T>(promise: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise<never>((_, reject) => (timer = setTimeout(() => reject(new Error(`${what}: not done after ${ms / 1000} s`)), ms))),
  ]);
}

/**
 * Publish `changes` compartment changes round-robin from `sims` and time each until `hub` (already
 * subscribed to every host's compartments, its retained replay passed) gets it. Returns the
 * latencies in ms, sorted; fewer than `changes` when some did not arrive within a minute.
 */
export async function timeChanges(hub: MqttClient, sims: SimulatedHost[], changes: number, timeoutMs: number, what: string): Promise<number[]> {
  const sent = new Map<number, number>();
  const latencies: number[] = [];
  let onMessage: ((topic: string, payload: Buffer) => void) | undefined;
  const allSeen = new Promise<void>((resolve) => {
    onMessage = (_topic, payload) => {
      const n = Number(/at head c(\d+)/.exec(payload.toString())?.[1] ?? NaN);
      const at = sent.get(n);
      if (at === undefined) return;
      sent.delete(n);
      latencies.push(performance.now() - at);
      if (latencies.length === changes) resolve();
    };
    hub.on("message", onMessage);
  });
  try {
    await withTimeout(
      pool(changes, CHANGE_CONCURRENCY, async (n) => {
        const sim = sims[n % sims.length]!;
        sent.set(n, performance.now());
        await sim.publish(topics.compartment(sim.host, "git"), JSON.stringify({ status: "ok", summary: `at head c${n}`, checkedAt: new Date().toISOString() }));
      }),
      timeoutMs,
      `${what}: changes`,
    );
    await withTimeout(allSeen, 60_000, `${what}: change deliveries`).catch(() => undefined);
  } finally {
    hub.off("message", onMessage!);
  }
  return latencies.sort((a, b) => a - b);
}

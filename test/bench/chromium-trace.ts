/**
 * Where the fleet page's main thread spent a phase, from a Chromium trace (Playwright's
 * browser.startTracing): busy time (top-level tasks), and within it style, layout, paint, script
 * and garbage collection, in milliseconds. The trace file stays for chrome://tracing or Perfetto.
 */
import { readFileSync } from "node:fs";

interface TraceEvent {
  name: string;
  ph: string;
  dur?: number;
  pid: number;
  tid: number;
  args?: { name?: string };
}

/** Event names → the figure they add to (complete events on the renderer's main thread). */
const FIGURES: Record<string, string> = {
  RunTask: "busyMs",
  UpdateLayoutTree: "styleMs",
  Layout: "layoutMs",
  PrePaint: "paintMs",
  Paint: "paintMs",
  Layerize: "paintMs",
  FunctionCall: "scriptMs",
  FireAnimationFrame: "scriptMs",
  EventDispatch: "scriptMs",
  TimerFire: "scriptMs",
  MajorGC: "gcMs",
  MinorGC: "gcMs",
};

export function summarizeTrace(file: string): Record<string, number> {
  const parsed = JSON.parse(readFileSync(file, "utf8")) as { traceEvents?: TraceEvent[] } | TraceEvent[];
  const events = Array.isArray(parsed) ? parsed : (parsed.traceEvents ?? []);
  // The page's main thread: the renderer thread named CrRendererMain with the most work.
  const mains = new Set(events.filter((e) => e.ph === "M" && e.name === "thread_name" && e.args?.name === "CrRendererMain").map((e) => `${e.pid}:${e.tid}`));
  const byThread = new Map<string, Record<string, number>>();
  for (const e of events) {
    const figure = FIGURES[e.name];
    const thread = `${e.pid}:${e.tid}`;
    if (!figure || e.ph !== "X" || !mains.has(thread)) continue;
    const sums = byThread.get(thread) ?? {};
    byThread.set(thread, sums);
    sums[figure] = (sums[figure] ?? 0) + (e.dur ?? 0) / 1000;
  }
  const busiest = [...byThread.values()].sort((a, b) => (b.busyMs ?? 0) - (a.busyMs ?? 0))[0] ?? {};
  return Object.fromEntries(["busyMs", "scriptMs", "styleMs", "layoutMs", "paintMs", "gcMs"].map((k) => [k, Math.round(busiest[k] ?? 0)]));
}

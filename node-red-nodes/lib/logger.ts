/** A pino logger whose lines end up in Node-RED's log (and from there in the hub's pino log). */
import pino, { type Logger } from "pino";
import type { NodeAPI } from "./red.js";

const LEVELS: Record<number, "error" | "warn" | "info" | "debug"> = { 60: "error", 50: "error", 40: "warn", 30: "info", 20: "debug", 10: "debug" };

export function nodeRedLogger(RED: NodeAPI, name: string): Logger {
  const destination = {
    write(line: string) {
      try {
        const { level, msg, time: _t, pid: _p, hostname: _h, name: _n, ...rest } = JSON.parse(line) as Record<string, unknown> & { level: number; msg?: string };
        void _t;
        void _p;
        void _h;
        void _n;
        const extra = Object.keys(rest).length ? ` ${JSON.stringify(rest)}` : "";
        RED.log[LEVELS[level] ?? "info"](`[${name}] ${msg ?? ""}${extra}`);
      } catch {
        RED.log.info(`[${name}] ${line.trim()}`);
      }
    },
  };
  return pino({ name, level: "debug" }, destination);
}

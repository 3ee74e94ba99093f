/**
 * The fleet stream (`GET /api/fleet/stream`, hub/fleet-stream.ts): every host's state in one
 * compressed HTTP response, then its live changes, for the fleet page. A page that subscribed to
 * the per-host retained topics made the broker replay 7 retained messages per host (70,000 at
 * 10,000 hosts) on every login; the hub already holds that state in its fleet view. The retained
 * per-host topics stay as they are (agents, Home Assistant, the CLI, Prometheus read them).
 *
 * The body is newline-delimited JSON, one FleetStreamLine per line: first the snapshot in parts
 * (`snapshot`, the last one with `done: true`), then `changes` as they happen (each host's whole
 * state, the latest only: changes of one host close together are sent once), and `ping` now and
 * then so a dead connection shows. One ordered stream from the one cache: no change can fall
 * between the snapshot and the live part. After a reconnect the page gets a new snapshot, which
 * replaces what it held (hosts not in it are gone).
 *
 * No zod here: the page imports this module (protocol/page.ts); the page checks each payload
 * as it checks MQTT payloads, and the hub sends only what its fleet view validated.
 */
// Types only: erased from the page's bundle (no zod there).
import type { Compartment, CompartmentName, HostInfo } from "./schemas.js";

export const FLEET_STREAM_PATH = "/api/fleet/stream";

/** Hosts per snapshot line: a line is parsed and applied within one frame on the page. */
export const FLEET_STREAM_PART_HOSTS = 250;

/** A line every this often when nothing changed. */
export const FLEET_STREAM_PING_MS = 25_000;

/** One host's whole state: what its retained availability, info and compartment topics hold now. */
export interface FleetStreamHost {
  host: string;
  /** null: no availability retained. */
  availability: "online" | "offline" | null;
  /** null: no info retained (a host that left the fleet has none). */
  info: HostInfo | null;
  compartments: Partial<Record<CompartmentName, Compartment>>;
  /** ISO time the hub last had a message from this host; null: none since the hub started. */
  lastSeen: string | null;
}

export type FleetStreamLine =
  | { kind: "snapshot"; hosts: FleetStreamHost[]; done: boolean }
  | { kind: "changes"; hosts: FleetStreamHost[] }
  | { kind: "ping" };

/** Splits a stream's text into whole lines; keeps the unfinished tail for the next chunk. */
export class LineSplitter {
  private tail = "";

  push(chunk: string): string[] {
    const text = this.tail + chunk;
    const lines = text.split("\n");
    this.tail = lines.pop() ?? "";
    return lines.filter((l) => l.length > 0);
  }
}

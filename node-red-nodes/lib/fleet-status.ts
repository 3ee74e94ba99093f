/**
 * The status text every node using a lockstep-fleet shows: the connection first, then what an admin
 * needs next. A fleet with no hosts yet says how to add one (the page and `lockstep --help` have the
 * full steps); otherwise how many hosts are online.
 */
import type { HostSnapshot } from "../../rollout/fleet-port.js";
import type { ConnectionState } from "./fleet-connection.js";
import type { NodeStatus } from "./red.js";
import { status } from "./status.js";

/** Shown in place of a host count; the full commands are in the page's empty-fleet panel. */
export const NO_HOSTS_HINT = "no hosts yet: lockstep users add HOST --role agent";

export function fleetStatus(state: ConnectionState, detail: string | undefined, hosts: readonly HostSnapshot[]): NodeStatus {
  switch (state) {
    case "connecting":
      return status.connecting();
    case "disconnected":
      return status.failed("disconnected");
    case "failed":
      return status.failed(detail ?? "connection failed");
    case "connected":
      if (hosts.length === 0) return status.waiting(NO_HOSTS_HINT);
      return status.ok(`${hosts.filter((h) => h.availability === "online").length}/${hosts.length} hosts online`);
  }
}

import { describe, expect, it } from "vitest";
import { fleetStatus, NO_HOSTS_HINT } from "../../node-red-nodes/lib/fleet-status.js";
import type { HostSnapshot } from "../../rollout/fleet-port.js";

const host = (name: string, availability: HostSnapshot["availability"]): HostSnapshot => ({ host: name, availability, compartments: {} });

describe("fleetStatus (the lockstep-fleet users' status dot)", () => {
  it("a connected fleet without hosts says how to add one, within Node-RED's status width", () => {
    const s = fleetStatus("connected", undefined, []);
    expect(s).toEqual({ fill: "yellow", shape: "dot", text: NO_HOSTS_HINT });
    expect(s.text).toContain("lockstep users add");
    expect(s.text!.length).toBeLessThanOrEqual(60);
  });

  it("a connected fleet with hosts counts the online ones", () => {
    expect(fleetStatus("connected", undefined, [host("a", "online"), host("b", "offline"), host("c", "unknown")])).toEqual({
      fill: "green",
      shape: "dot",
      text: "1/3 hosts online",
    });
  });

  it("connection problems come first, with their reason", () => {
    expect(fleetStatus("connecting", undefined, [host("a", "online")]).fill).toBe("yellow");
    expect(fleetStatus("failed", "not authorized", [])).toEqual({ fill: "red", shape: "ring", text: "not authorized" });
    expect(fleetStatus("disconnected", undefined, []).text).toBe("disconnected");
  });
});

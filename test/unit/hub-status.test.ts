import { describe, expect, it } from "vitest";
import { HubStatus } from "../../protocol/index.js";
import { hubStatus } from "../../hub/status.js";

describe("hub/status payload", () => {
  const startedAt = new Date("2026-01-02T03:04:05Z");

  it("says GitHub is not configured without an owner and repo", () => {
    const s = hubStatus({ startedAt, mqttPort: 1883 });
    expect(HubStatus.parse(s)).toEqual(s);
    expect(s.github).toEqual({ configured: false });
    expect(s.mqttPort).toBe(1883);
    expect(s.startedAt).toBe("2026-01-02T03:04:05.000Z");
    expect(hubStatus({ startedAt, github: { owner: "me" } }).github).toEqual({ configured: false });
  });

  it("names the configured repository and leaves the port out with an external broker", () => {
    const s = hubStatus({ startedAt, github: { owner: "me", repo: "fleet" } });
    expect(s.github).toEqual({ configured: true, repo: "me/fleet" });
    expect("mqttPort" in s).toBe(false);
  });
});

import { describe, expect, it } from "vitest";
import { AuditEvent } from "../../protocol/schemas.js";
import { RefusalAudit } from "../../hub/refusal-audit.js";

describe("RefusalAudit", () => {
  function setup(opts: { maxPerWindow?: number } = {}) {
    let t = 0;
    const events: AuditEvent[] = [];
    const audit = new RefusalAudit((e) => events.push(AuditEvent.parse(e)), { windowMs: 600_000, now: () => t, ...opts });
    return { audit, events, advance: (ms: number) => (t += ms) };
  }
  const refusal = { channel: "mqtt" as const, user: "operator", address: "10.0.0.9", reason: "bad user name or password" };

  it("writes one refused login per kind and window, the next one saying how many were left out", () => {
    const { audit, events, advance } = setup();
    for (let i = 0; i < 500; i++) audit.loginRefused(refusal);
    expect(events).toHaveLength(1);
    expect(events[0]).toMatchObject({ actor: "operator", action: "login.refused", target: "mqtt", details: { address: "10.0.0.9", repeated: 0, channel: "mqtt" } });
    audit.loginRefused({ ...refusal, address: "10.0.0.10" }); // another address is another kind
    expect(events).toHaveLength(2);
    advance(600_000);
    audit.loginRefused(refusal);
    expect(events).toHaveLength(3);
    expect(events[2]!.details).toMatchObject({ repeated: 499 });
  });

  it("caps the entries per window over all kinds, saying so once", () => {
    const { audit, events, advance } = setup({ maxPerWindow: 5 });
    for (let i = 0; i < 50; i++) audit.loginRefused({ ...refusal, user: `guess-${i}` });
    expect(events.map((e) => e.action)).toEqual([...Array(5).fill("login.refused"), "audit.suppressed"]);
    advance(600_000);
    audit.accessDenied({ user: "web-1", clientId: "lockstep-agent-web-1", action: "publish", topic: "lockstep/v1/hosts/web-2/info", reason: "not allowed for this role" });
    expect(events.at(-1)).toMatchObject({ action: "access.denied", actor: "web-1", target: "lockstep/v1/hosts/web-2/info", details: { action: "publish", repeated: 0 } });
  });

  it("clips attacker-chosen names", () => {
    const { audit, events } = setup();
    audit.loginRefused({ ...refusal, user: "x".repeat(10_000) });
    expect(events[0]!.actor.length).toBeLessThan(300);
  });
});

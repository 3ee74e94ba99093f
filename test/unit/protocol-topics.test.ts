import { describe, it, expect } from "vitest";
import { Topics, COMPARTMENTS, isValidHostId } from "../../protocol/index.js";

describe("Topics", () => {
  const t = new Topics();
  it("builds the documented layout", () => {
    expect(t.availability("web-1")).toBe("lockstep/v1/hosts/web-1/availability");
    expect(t.compartment("web-1", "lock")).toBe("lockstep/v1/hosts/web-1/compartments/lock");
    expect(t.commands("web-1")).toBe("lockstep/v1/hosts/web-1/commands");
    expect(t.jobOutput("web-1", "j1")).toBe("lockstep/v1/hosts/web-1/jobs/j1/output");
    expect(t.expected()).toBe("lockstep/v1/fleet/expected");
    expect(t.rollout("r1")).toBe("lockstep/v1/fleet/rollouts/r1");
    expect(t.haDiscovery("web-1")).toBe("homeassistant/device/lockstep_web-1/config");
  });

  it("parses every topic it builds", () => {
    expect(t.parse(t.availability("a"))).toEqual({ kind: "availability", host: "a" });
    expect(t.parse(t.info("a"))).toEqual({ kind: "info", host: "a" });
    for (const c of COMPARTMENTS) expect(t.parse(t.compartment("a", c))).toEqual({ kind: "compartment", host: "a", compartment: c });
    expect(t.parse(t.commands("a"))).toEqual({ kind: "commands", host: "a" });
    expect(t.parse(t.actions("a"))).toEqual({ kind: "actions", host: "a" });
    expect(t.parse(t.hubActions("home-assistant"))).toEqual({ kind: "hubActions", user: "home-assistant" });
    expect(t.parse(t.hubActions("ha@home.lan"))).toEqual({ kind: "hubActions", user: "ha@home.lan" });
    for (const bad of ["lockstep/v1/hub/actions/+", "lockstep/v1/hub/actions/", "lockstep/v1/hub/actions/a/b", "lockstep/v1/hub/actions/-x"]) expect(t.parse(bad), bad).toBeNull();
    expect(t.parse(t.automatic())).toEqual({ kind: "automatic" });
    expect(t.parse(t.fleetSummary())).toEqual({ kind: "fleetSummary" });
    expect(t.parse(t.job("a", "j-1"))).toEqual({ kind: "job", host: "a", jobId: "j-1" });
    expect(t.parse(t.jobOutput("a", "j-1"))).toEqual({ kind: "jobOutput", host: "a", jobId: "j-1" });
    expect(t.parse(t.expected())).toEqual({ kind: "expected" });
    expect(t.parse(t.events())).toEqual({ kind: "events" });
    expect(t.parse(t.rollout("r"))).toEqual({ kind: "rollout", rolloutId: "r" });
    expect(t.parse(t.history("r"))).toEqual({ kind: "history", rolloutId: "r" });
    expect(t.parse(t.hubAvailability())).toEqual({ kind: "hubAvailability" });
    expect(t.parse(t.hubStatus())).toEqual({ kind: "hubStatus" });
    expect(t.parse(`${t.root}/hub/status/extra`)).toBeNull();
  });

  it("rejects foreign, malformed and unknown topics", () => {
    expect(t.parse("other/v1/hosts/a/info")).toBeNull();
    expect(t.parse("lockstep/v1/hosts/A B/info")).toBeNull();
    expect(t.parse("lockstep/v1/hosts/a/compartments/kernel")).toBeNull();
    expect(t.parse("lockstep/v1/hosts/a/info/extra")).toBeNull();
    expect(t.parse("lockstep/v1/fleet/rollouts/+")).toBeNull();
  });

  it("honours a custom prefix and rejects a bad one", () => {
    const c = new Topics("site/a", "ha");
    expect(c.info("x")).toBe("site/a/v1/hosts/x/info");
    expect(c.parse("site/a/v1/hosts/x/info")).toEqual({ kind: "info", host: "x" });
    expect(c.haStatus()).toBe("ha/status");
    expect(() => new Topics("bad/+/prefix")).toThrow(/invalid topic prefix/);
    expect(() => new Topics("#")).toThrow();
  });

  it("host ids cannot carry topic or shell metacharacters", () => {
    for (const bad of ["", "a/b", "a+b", "a#", "-x", "A", "a b", "a;rm", "x".repeat(64)]) expect(isValidHostId(bad)).toBe(false);
    for (const good of ["a", "web-1", "nas_2", "x".repeat(63)]) expect(isValidHostId(good)).toBe(true);
  });
});

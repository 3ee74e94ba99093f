import { describe, expect, it } from "vitest";
import { LoginBackoff, addressKey, loginWithBackoff } from "../../broker/login-backoff.js";

function clock(start = 1_000_000) {
  let t = start;
  return { now: () => t, advance: (ms: number) => (t += ms) };
}

describe("LoginBackoff", () => {
  it("lets a user fail a few times, then makes it wait 1 s, 2 s, 4 s … up to the cap", () => {
    const c = clock();
    const b = new LoginBackoff({ freeFailures: 3, baseDelayMs: 1_000, maxDelayMs: 8_000, now: c.now });
    for (let i = 0; i < 3; i++) {
      expect(b.check("op", "10.0.0.9").allowed).toBe(true);
      b.failed("op", "10.0.0.9");
    }
    expect(b.check("op", "10.0.0.9").allowed).toBe(true); // 3 free failures used, no wait yet
    const waits: number[] = [];
    for (let i = 0; i < 5; i++) {
      b.failed("op", "10.0.0.9");
      const check = b.check("op", "10.0.0.9");
      if (check.allowed) throw new Error("expected a wait");
      waits.push(check.retryAfterMs);
      c.advance(check.retryAfterMs);
    }
    expect(waits).toEqual([1_000, 2_000, 4_000, 8_000, 8_000]);
  });

  it("never locks the user out from another address, and a success there changes nothing here", () => {
    const c = clock();
    const b = new LoginBackoff({ freeFailures: 3, now: c.now });
    for (let i = 0; i < 20; i++) b.failed("operator", "203.0.113.7");
    expect(b.check("operator", "203.0.113.7")).toMatchObject({ allowed: false, scope: "user" });
    expect(b.check("operator", "192.0.2.1").allowed).toBe(true);
    b.succeeded("operator", "192.0.2.1");
    expect(b.check("operator", "203.0.113.7").allowed).toBe(false);
  });

  it("a success forgets that user's failures from that address", () => {
    const b = new LoginBackoff({ freeFailures: 1 });
    b.failed("op", "a");
    b.succeeded("op", "a");
    b.failed("op", "a");
    expect(b.check("op", "a").allowed).toBe(true);
  });

  it("slows down an address that sprays many user names, but not one retrying a single wrong password", () => {
    const c = clock();
    const b = new LoginBackoff({ freeFailures: 3, addressFreeFailures: 10, now: c.now });
    // One misconfigured client: its own pair backs off, the address budget is barely touched.
    for (let i = 0; i < 50; i++) {
      const check = b.check("web-1", "10.0.0.5");
      if (!check.allowed) c.advance(check.retryAfterMs);
      b.failed("web-1", "10.0.0.5");
    }
    expect(b.check("web-2", "10.0.0.5").allowed).toBe(true);
    // Spraying: four names × three guesses = 12 free failures > 10.
    for (const user of ["u1", "u2", "u3", "u4"]) for (let i = 0; i < 3; i++) b.failed(user, "198.51.100.4");
    expect(b.check("anyone", "198.51.100.4")).toMatchObject({ allowed: false, scope: "address" });
    expect(b.check("anyone", "198.51.100.5").allowed).toBe(true);
  });

  it("forgets failures after a quiet period and keeps at most maxEntries", () => {
    const c = clock();
    const b = new LoginBackoff({ freeFailures: 0, forgetAfterMs: 60_000, maxEntries: 100, now: c.now });
    b.failed("op", "a");
    expect(b.check("op", "a").allowed).toBe(false);
    c.advance(60_001);
    expect(b.check("op", "a").allowed).toBe(true);
    for (let i = 0; i < 1_000; i++) b.failed(`user-${i}`, `10.0.${i >> 8}.${i & 255}`);
    expect(b.size).toBeLessThanOrEqual(200);
  });

  it("counts IPv4-mapped addresses as IPv4 and an IPv6 address as its /64", () => {
    expect(addressKey("::ffff:127.0.0.1")).toBe("127.0.0.1");
    expect(addressKey("2001:db8:0:1::5")).toBe("2001:db8:0:1::/64");
    expect(addressKey("2001:0db8:0000:0001:ffff:1:2:3")).toBe("2001:db8:0:1::/64");
    expect(addressKey("::1")).toBe("0:0:0:0::/64");
  });

  it("loginWithBackoff does not verify the password while backing off", async () => {
    const b = new LoginBackoff({ freeFailures: 1 });
    let verified = 0;
    const wrong = async () => {
      verified++;
      return null;
    };
    expect(await loginWithBackoff(b, "op", "a", wrong)).toEqual({ ok: false, reason: "bad user name or password" });
    expect(await loginWithBackoff(b, "op", "a", wrong)).toMatchObject({ ok: false });
    const refused = await loginWithBackoff(b, "op", "a", async () => ({ name: "op" }));
    expect(refused).toMatchObject({ ok: false, reason: expect.stringMatching(/too many failed logins: retry in \d+ s/), retryAfterMs: expect.any(Number) });
    expect(verified).toBe(2);
    expect(await loginWithBackoff(b, "op", "b", async () => ({ name: "op" }))).toEqual({ ok: true, user: { name: "op" } });
  });
});

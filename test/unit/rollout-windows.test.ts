import { describe, expect, it } from "vitest";
import { isWithinWindow, localTime } from "../../protocol/windows.js";
import { MaintenanceWindow } from "../../protocol/schemas.js";

const w = (x: unknown) => MaintenanceWindow.parse(x);

describe("maintenance windows", () => {
  it("simple window in UTC, end exclusive", () => {
    const win = w({ days: ["sat"], start: "02:00", end: "05:00" });
    expect(isWithinWindow(win, new Date("2026-11-21T01:59:00Z"))).toBe(false);
    expect(isWithinWindow(win, new Date("2026-11-21T02:00:00Z"))).toBe(true);
    expect(isWithinWindow(win, new Date("2026-11-21T04:59:00Z"))).toBe(true);
    expect(isWithinWindow(win, new Date("2026-11-21T05:00:00Z"))).toBe(false);
    // Sunday, same hour: wrong day
    expect(isWithinWindow(win, new Date("2026-11-22T03:00:00Z"))).toBe(false);
  });

  it("evaluates in the window's time zone, including daylight saving time", () => {
    const berlin = w({ days: ["sat"], start: "02:00", end: "05:00", timeZone: "Europe/Berlin" });
    // Winter (CET, UTC+1): 02:00 Berlin = 01:00 UTC
    expect(isWithinWindow(berlin, new Date("2026-11-21T01:30:00Z"))).toBe(true);
    expect(isWithinWindow(berlin, new Date("2026-11-21T04:30:00Z"))).toBe(false);
    // Summer (CEST, UTC+2): 02:00 Berlin = 00:00 UTC
    expect(isWithinWindow(berlin, new Date("2026-07-04T00:30:00Z"))).toBe(true);
    expect(isWithinWindow(berlin, new Date("2026-07-04T03:30:00Z"))).toBe(false);
    // Kathmandu is UTC+05:45: Friday 20:00 UTC is already Saturday 01:45 there.
    const kathmandu = w({ days: ["sat"], start: "01:00", end: "02:00", timeZone: "Asia/Kathmandu" });
    expect(localTime(new Date("2026-11-20T20:00:00Z"), "Asia/Kathmandu")).toEqual({ day: "sat", minutes: 105 });
    expect(isWithinWindow(kathmandu, new Date("2026-11-20T20:00:00Z"))).toBe(true);
  });

  it("windows crossing midnight belong to the day they open", () => {
    const fri = w({ days: ["fri"], start: "22:00", end: "02:00", timeZone: "America/New_York" });
    // Friday 2026-11-20 23:00 New York = Saturday 04:00 UTC
    expect(isWithinWindow(fri, new Date("2026-11-21T04:00:00Z"))).toBe(true);
    // Saturday 01:30 New York (still Friday's window) = 06:30 UTC
    expect(isWithinWindow(fri, new Date("2026-11-21T06:30:00Z"))).toBe(true);
    // Saturday 02:00 New York: closed
    expect(isWithinWindow(fri, new Date("2026-11-21T07:00:00Z"))).toBe(false);
    // Thursday 23:00 New York: wrong day
    expect(isWithinWindow(fri, new Date("2026-11-20T04:00:00Z"))).toBe(false);
    // Friday 01:00 New York belongs to Thursday's window, which does not exist
    expect(isWithinWindow(fri, new Date("2026-11-20T06:00:00Z"))).toBe(false);
  });

  it("start == end is the whole day; 24:00 is the end of the day", () => {
    expect(isWithinWindow(w({ days: ["sat"], start: "00:00", end: "00:00" }), new Date("2026-11-21T23:59:00Z"))).toBe(true);
    expect(isWithinWindow(w({ days: ["sat"], start: "20:00", end: "24:00" }), new Date("2026-11-21T23:59:00Z"))).toBe(true);
  });

  it("an unknown time zone is a clear error", () => {
    expect(() => isWithinWindow(w({ start: "01:00", end: "02:00", timeZone: "Mars/Olympus" }), new Date())).toThrow(/unknown time zone "Mars\/Olympus"/);
  });
});

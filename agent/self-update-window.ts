/**
 * Is a moment inside a weekly window (days, HH:MM-HH:MM, time zone)? A window whose end is before
 * its start crosses midnight and belongs to the day it starts on (sat 23:00-02:00 includes
 * sunday 01:00).
 */
import type { MaintenanceWindow } from "../protocol/index.js";

const DAY_NAMES = ["sun", "mon", "tue", "wed", "thu", "fri", "sat"] as const;

function minutesOf(hhmm: string): number {
  const [h, m] = hhmm.split(":").map(Number);
  return (h ?? 0) * 60 + (m ?? 0);
}

/** Weekday and minute of day of `at` as seen in `timeZone`. */
function localTime(at: Date, timeZone: string): { day: number; minute: number } {
  const parts = new Intl.DateTimeFormat("en-US", { timeZone, weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" }).formatToParts(at);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  const day = DAY_NAMES.indexOf(get("weekday").toLowerCase().slice(0, 3) as (typeof DAY_NAMES)[number]);
  return { day, minute: Number(get("hour")) * 60 + Number(get("minute")) };
}

export function insideWindow(window: MaintenanceWindow, at: Date): boolean {
  const { day, minute } = localTime(at, window.timeZone);
  const start = minutesOf(window.start);
  const end = minutesOf(window.end);
  const dayAllowed = (d: number) => window.days.includes(DAY_NAMES[(d + 7) % 7]!);
  if (start === end) return dayAllowed(day); // a whole-day window
  if (start < end) return dayAllowed(day) && minute >= start && minute < end;
  // Crosses midnight: the evening part belongs to today, the morning part to yesterday's window.
  return (dayAllowed(day) && minute >= start) || (dayAllowed(day - 1) && minute < end);
}

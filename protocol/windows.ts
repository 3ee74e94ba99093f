/**
 * Weekly maintenance windows ("sat,sun 02:00-05:00 Europe/Berlin"), evaluated in the window's own
 * time zone through Intl, so daylight saving time shifts are handled by the platform's tz database.
 *
 * A window whose end is before its start crosses midnight: "fri 22:00-02:00" covers Friday 22:00
 * to Saturday 02:00 (the listed day is the day the window opens). start == end means the whole day.
 */
import type { MaintenanceWindow } from "./schemas.js";
import { ConfigError } from "./errors.js";

const DAYS = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"] as const;
type Day = (typeof DAYS)[number];
const SHORT_TO_DAY: Record<string, Day> = { Mon: "mon", Tue: "tue", Wed: "wed", Thu: "thu", Fri: "fri", Sat: "sat", Sun: "sun" };

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatterFor(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    try {
      f = new Intl.DateTimeFormat("en-US", { timeZone, weekday: "short", hour: "2-digit", minute: "2-digit", hourCycle: "h23" });
    } catch {
      throw new ConfigError(`unknown time zone "${timeZone}"`, "use an IANA name such as Europe/Berlin or UTC");
    }
    formatters.set(timeZone, f);
  }
  return f;
}

/** Throws ConfigError unless the platform knows `timeZone` (an IANA name). */
export function checkTimeZone(timeZone: string): void {
  formatterFor(timeZone);
}

/** Weekday and minute of the day at `at` in `timeZone`. */
export function localTime(at: Date, timeZone: string): { day: Day; minutes: number } {
  const parts = formatterFor(timeZone).formatToParts(at);
  const get = (type: string) => parts.find((p) => p.type === type)?.value ?? "";
  const day = SHORT_TO_DAY[get("weekday")];
  if (!day) throw new ConfigError(`cannot read the weekday in time zone "${timeZone}"`);
  return { day, minutes: Number(get("hour")) * 60 + Number(get("minute")) };
}

const toMinutes = (hhmm: string): number => {
  const [h, m] = hhmm.split(":");
  return Number(h) * 60 + Number(m);
};

const previousDay = (d: Day): Day => DAYS[(DAYS.indexOf(d) + 6) % 7]!;

/** Is `at` inside the window? Throws ConfigError for an unknown time zone. */
export function isWithinWindow(window: MaintenanceWindow, at: Date): boolean {
  const { day, minutes } = localTime(at, window.timeZone);
  const start = toMinutes(window.start);
  const end = toMinutes(window.end);
  const days = window.days as readonly Day[];
  if (start === end) return days.includes(day);
  if (start < end) return days.includes(day) && minutes >= start && minutes < end;
  // Crosses midnight: the evening part belongs to the listed day, the early-morning part to the day after it.
  return (days.includes(day) && minutes >= start) || (days.includes(previousDay(day)) && minutes < end);
}

export function describeWindow(window: MaintenanceWindow): string {
  return `${window.days.join(",")} ${window.start}-${window.end} ${window.timeZone}`;
}

/**
 * A preview as a reader sees it: one row per host (affected, builds, reboot, package changes, size)
 * and how far the fleet's preview of a PR head has got. The fleet page, the GitHub PR comment, the
 * terminal client and the Node-RED node all word previews with these, so they say the same thing.
 *
 * No zod and no Node: the fleet page's browser module (protocol/page.ts) is built from this file.
 */
import type { HostPreview, PreviewOutcome, PreviewSummary } from "./preview.js";

/** "+140 MiB", "-12 KiB", "+1.5 GiB": binary units as Nix prints them. */
export function formatSizeDelta(bytes: number): string {
  const sign = bytes < 0 ? "-" : "+";
  const abs = Math.abs(bytes);
  const [value, unit] = abs >= 1024 ** 3 ? [abs / 1024 ** 3, "GiB"] : abs >= 1024 ** 2 ? [abs / 1024 ** 2, "MiB"] : [abs / 1024, "KiB"];
  const shown = value >= 10 || Number.isInteger(value) ? Math.round(value).toString() : value.toFixed(1);
  return `${sign}${shown} ${unit}`;
}

/** "hello 2.12 → 2.13", "newtool 3.1 (new)", "oldtool (removed)". */
export function formatPackageChange(c: { name: string; old: string[]; new: string[] }): string {
  const v = (vs: string[]) => vs.map((x) => x || "ε").join(", ");
  if (c.old.length === 0 && c.new.length > 0) return `${c.name} ${v(c.new)} (new)`;
  if (c.new.length === 0 && c.old.length > 0) return `${c.name} (removed)`;
  if (c.old.length === 0 && c.new.length === 0) return `${c.name} (size)`;
  return `${c.name} ${v(c.old)} → ${v(c.new)}`;
}

/** What each outcome is called where people read it. */
export const PREVIEW_OUTCOME_LABEL: Record<PreviewOutcome, string> = {
  affected: "affected",
  "not-affected": "not affected",
  "does-not-build": "does not build",
  refused: "not previewed",
  failed: "preview failed",
};

/** The fields of a host preview the views read (a page's unchecked JSON has at least these). */
export type HostPreviewView = Pick<HostPreview, "host" | "outcome" | "summary" | "affected" | "builds" | "packages" | "builtOn"> &
  Partial<Pick<HostPreview, "error" | "reboot" | "closureSizeBefore" | "closureSizeAfter" | "units">>;

/** One host's preview in words, one field per table column. */
export interface PreviewRow {
  host: string;
  outcome: PreviewOutcome;
  /** "yes", "no", or "?" (the preview did not get as far as comparing systems). */
  affected: string;
  /** "yes", "no", "not built" (evaluated only) or "—" (not affected: nothing to build). */
  builds: string;
  /** "yes (kernel, initrd)", "no", or "?" when not known. */
  reboot: string;
  /** Each package change, worded ("hello 2.12 → 2.13 +47 KiB"). */
  packages: string[];
  /** The closure's size change ("+47 KiB"), "" when unknown or none. */
  size: string;
  /** "built on builder" when another host previewed this one, else "". */
  builtElsewhere: string;
  /** Why it failed or was not previewed (the error's last lines), "" otherwise. */
  reason: string;
}

/** The last `n` non-empty lines of a text (a build error ends with what matters). */
function tail(text: string, n: number): string {
  return text
    .split("\n")
    .map((l) => l.trimEnd())
    .filter(Boolean)
    .slice(-n)
    .join("\n");
}

export function previewRow(p: HostPreviewView, opts: { reasonLines?: number } = {}): PreviewRow {
  const failed = p.outcome === "does-not-build" || p.outcome === "refused" || p.outcome === "failed";
  const delta = p.closureSizeBefore !== undefined && p.closureSizeAfter !== undefined ? p.closureSizeAfter - p.closureSizeBefore : undefined;
  return {
    host: p.host,
    outcome: p.outcome,
    affected: p.affected === true ? "yes" : p.affected === false ? "no" : "?",
    builds: p.outcome === "not-affected" ? "—" : p.builds === true ? "yes" : p.builds === false ? "no" : "not built",
    reboot: p.outcome === "not-affected" ? "no" : p.reboot ? (p.reboot.needed ? `yes${p.reboot.changed.length ? ` (${p.reboot.changed.join(", ")})` : ""}` : "no") : "?",
    packages: p.packages
      .filter((c) => c.old.length > 0 || c.new.length > 0)
      .map((c) => formatPackageChange(c) + (c.sizeDeltaBytes ? ` ${formatSizeDelta(c.sizeDeltaBytes)}` : "")),
    size: delta !== undefined && delta !== 0 ? formatSizeDelta(delta) : "",
    builtElsewhere: p.builtOn && p.builtOn !== p.host ? `built on ${p.builtOn}` : "",
    reason: failed ? tail(p.error ?? p.summary, opts.reasonLines ?? 3) : "",
  };
}

/** How far the fleet's preview of a PR head has got. */
export interface PreviewProgress {
  /** Hosts whose preview the hub asked for (themselves or through a builder). */
  requested: number;
  /** Of those, how many have reported for this head. */
  done: number;
  /** Every requested host reported (hosts no preview could reach do not count). */
  complete: boolean;
  /** Hosts where it does not build. */
  doesNotBuild: number;
  /** Why the PR head is not previewed at all (then nothing more will come). */
  notPreviewed?: string;
}

/**
 * Progress from the summary: every host counts except those no preview could reach (offline, no
 * builder for them: `unreachable`, from the hub), which are never asked.
 */
export function previewProgress(s: Pick<PreviewSummary, "hosts"> & { unreachable?: string[] | undefined; notPreviewed?: string | undefined }): PreviewProgress {
  if (s.notPreviewed) return { requested: 0, done: 0, complete: true, doesNotBuild: 0, notPreviewed: s.notPreviewed };
  const unreachable = s.unreachable?.length ?? 0;
  const requested = Math.max(0, s.hosts.total - unreachable);
  const done = Math.min(s.hosts.previewed, requested);
  return { requested, done, complete: done >= requested, doesNotBuild: s.hosts.doesNotBuild };
}

/**
 * Previews of a pending lock update: what merging PR <n> would change on each host, before anyone
 * merges. Agents (or a builder host on their behalf) publish one HostPreview per PR and host on
 * `fleet/previews/<pr>/<host>` (retained); the hub folds them into one PreviewSummary per PR on
 * `fleet/preview-summaries/<pr>`. Only previews of the PR's current head count: a new head
 * invalidates every older preview.
 */
import { z } from "zod";
import { CommitSha } from "./schemas.js";
import { HOST_ID_PATTERN } from "./topics.js";
import { formatPackageChange, formatSizeDelta } from "./preview-view.js";

export { formatPackageChange, formatSizeDelta, PREVIEW_OUTCOME_LABEL, previewProgress, previewRow, type HostPreviewView, type PreviewProgress, type PreviewRow } from "./preview-view.js";

const isoDate = z.string().datetime({ offset: true });
const hostId = z.string().regex(HOST_ID_PATTERN, "host ids are 1-63 chars of a-z, 0-9, - and _");

export const PackageChangeSchema = z.object({
  name: z.string().min(1).max(200),
  old: z.array(z.string().max(100)).max(20),
  new: z.array(z.string().max(100)).max(20),
  sizeDeltaBytes: z.number().int().optional(),
});

export const UnitChangesSchema = z.object({
  stop: z.array(z.string().max(200)).max(500),
  restart: z.array(z.string().max(200)).max(500),
  start: z.array(z.string().max(200)).max(500),
  reload: z.array(z.string().max(200)).max(500),
  skipped: z.array(z.string().max(200)).max(500),
  restartSystemd: z.boolean(),
});

/**
 * - not-affected: the PR head evaluates to the system this host runs now (same out path);
 * - affected: it evaluates to a different system (see `builds` for whether it was built);
 * - does-not-build: evaluation or build failed (`error` holds the last lines);
 * - refused: not previewed for a stated reason (fork PR, changes more than flake.lock, ...);
 * - failed: the preview itself could not run (fetch failed, timeout, cancelled).
 */
export const PREVIEW_OUTCOMES = ["not-affected", "affected", "does-not-build", "refused", "failed"] as const;
export const PreviewOutcome = z.enum(PREVIEW_OUTCOMES);
export type PreviewOutcome = z.infer<typeof PreviewOutcome>;

export const HostPreview = z.object({
  pr: z.number().int().positive(),
  host: hostId,
  headSha: CommitSha,
  outcome: PreviewOutcome,
  summary: z.string().max(500),
  /** null when the preview did not get as far as comparing systems. */
  affected: z.boolean().nullable(),
  /** true: built; false: evaluation or build failed; null: not built (evaluation only). */
  builds: z.boolean().nullable(),
  error: z.string().max(8000).optional(),
  currentSystem: z.string().max(300).optional(),
  newSystem: z.string().max(300).optional(),
  packages: z.array(PackageChangeSchema).max(2000).default([]),
  closureSizeBefore: z.number().int().nonnegative().optional(),
  closureSizeAfter: z.number().int().nonnegative().optional(),
  /** What the build would do (from `nix build --dry-run`): derivations to build, paths to fetch. */
  dryRun: z.object({ toBuild: z.number().int().nonnegative(), toFetch: z.number().int().nonnegative() }).optional(),
  reboot: z.object({ needed: z.boolean(), changed: z.array(z.string().max(100)).max(20) }).nullable().default(null),
  units: UnitChangesSchema.nullable().default(null),
  /** The host that evaluated and built; differs from `host` when a builder previewed for it. */
  builtOn: hostId,
  jobId: z.string().max(100).optional(),
  startedAt: isoDate,
  finishedAt: isoDate,
});
export type HostPreview = z.infer<typeof HostPreview>;

/** Size change of a host's closure, when both sizes are known. */
export function closureSizeDelta(p: Pick<HostPreview, "closureSizeBefore" | "closureSizeAfter">): number | undefined {
  return p.closureSizeBefore !== undefined && p.closureSizeAfter !== undefined ? p.closureSizeAfter - p.closureSizeBefore : undefined;
}

export const PreviewSummary = z.object({
  pr: z.number().int().positive(),
  headSha: CommitSha,
  /** One line for people: "affects 2 of 3 hosts · 1 needs a reboot · builds everywhere · hello 2.12 → 2.13 +47 KiB". */
  text: z.string(),
  /** `text` without the package changes and size ("affects 2 of 3 hosts · 1 needs a reboot · builds everywhere"). */
  headline: z.string().optional(),
  hosts: z.object({
    total: z.number().int().nonnegative(),
    previewed: z.number().int().nonnegative(),
    affected: z.number().int().nonnegative(),
    notAffected: z.number().int().nonnegative(),
    doesNotBuild: z.number().int().nonnegative(),
    pending: z.number().int().nonnegative(),
  }),
  notAffectedHosts: z.array(hostId),
  rebootHosts: z.array(hostId),
  failedHosts: z.array(z.object({ host: hostId, outcome: PreviewOutcome, reason: z.string() })),
  buildsEverywhere: z.boolean(),
  packages: z.array(z.object({ name: z.string(), old: z.array(z.string()), new: z.array(z.string()), hosts: z.array(hostId) })),
  /** The largest closure size change of any host (bytes), when any was measured. */
  sizeDeltaBytes: z.number().int().optional(),
  /** Why this head is not previewed at all (a fork PR, previews off, ...); `text` says it too. */
  notPreviewed: z.string().max(500).optional(),
  /** Hosts no preview could reach (offline, no builder for them): never asked, so not waited for. */
  unreachable: z.array(hostId).optional(),
  updatedAt: isoDate,
});
export type PreviewSummary = z.infer<typeof PreviewSummary>;

/**
 * Why a preview failed, in one line: Nix's first "error:" line (it names what failed, e.g. the
 * builder of openssl-3.0.16; the last one only says "1 dependencies … failed"), else the last
 * line, with store path hashes dropped ("/nix/store/<hash>-openssl-3.0.16.drv" → "openssl-3.0.16.drv").
 */
export function previewReason(p: Pick<HostPreview, "error" | "summary">): string {
  const lines = (p.error ?? p.summary).split("\n").map((l) => l.trim()).filter(Boolean);
  const line = lines.find((l) => l.startsWith("error:")) ?? lines.at(-1) ?? p.summary;
  return line.replace(/\/nix\/store\/[0-9a-z]{32}-/g, "").slice(0, 300);
}

function names(hosts: string[], max = 3): string {
  return hosts.length <= max ? hosts.join(", ") : `${hosts.slice(0, max).join(", ")} +${hosts.length - max}`;
}

export interface SummaryOptions {
  /** How many package changes the text names before "…". */
  maxPackagesInText?: number;
  now?: Date;
}

/**
 * Fold the per-host previews of one PR head into the fleet summary. `fleetHosts` is every host the
 * fleet knows (so "affects 2 of 9" counts hosts not previewed yet as pending); previews of another
 * head are ignored (a new head invalidates them).
 */
export function buildPreviewSummary(pr: number, headSha: string, fleetHosts: readonly string[], previews: readonly HostPreview[], opts: SummaryOptions = {}): PreviewSummary {
  const current = new Map<string, HostPreview>();
  for (const p of previews) if (p.pr === pr && p.headSha === headSha) current.set(p.host, p);
  const all = [...new Set([...fleetHosts, ...current.keys()])].sort();
  const of = (o: PreviewOutcome) => all.filter((h) => current.get(h)?.outcome === o);
  const affected = of("affected");
  const notAffected = of("not-affected");
  const doesNotBuild = of("does-not-build");
  const pending = all.filter((h) => !current.has(h));
  const rebootHosts = all.filter((h) => current.get(h)?.reboot?.needed === true);
  const failedHosts = all
    .map((h) => current.get(h))
    .filter((p): p is HostPreview => p !== undefined && (p.outcome === "does-not-build" || p.outcome === "refused" || p.outcome === "failed"))
    .map((p) => ({ host: p.host, outcome: p.outcome, reason: previewReason(p) }));
  const built = affected.filter((h) => current.get(h)!.builds === true);
  const buildsEverywhere = failedHosts.length === 0 && pending.length === 0 && built.length === affected.length;

  const byChange = new Map<string, { name: string; old: string[]; new: string[]; hosts: string[]; size: number }>();
  let sizeDeltaBytes: number | undefined;
  for (const h of affected) {
    const p = current.get(h)!;
    for (const c of p.packages) {
      if (c.old.length === 0 && c.new.length === 0) continue;
      const key = `${c.name}\0${c.old.join(",")}\0${c.new.join(",")}`;
      const entry = byChange.get(key) ?? { name: c.name, old: c.old, new: c.new, hosts: [], size: 0 };
      entry.hosts.push(h);
      entry.size = Math.max(entry.size, Math.abs(c.sizeDeltaBytes ?? 0));
      byChange.set(key, entry);
    }
    const d = closureSizeDelta(p);
    if (d !== undefined && (sizeDeltaBytes === undefined || Math.abs(d) > Math.abs(sizeDeltaBytes))) sizeDeltaBytes = d;
  }
  const packages = [...byChange.values()]
    .sort((a, b) => b.hosts.length - a.hosts.length || b.size - a.size || a.name.localeCompare(b.name))
    .map(({ name, old, new: next, hosts }) => ({ name, old, new: next, hosts }));

  const parts = [`affects ${affected.length + doesNotBuild.length} of ${all.length} host${all.length === 1 ? "" : "s"}`];
  if (pending.length > 0) parts.push(`${pending.length} not previewed yet`);
  if (rebootHosts.length > 0) parts.push(`${rebootHosts.length} need${rebootHosts.length === 1 ? "s" : ""} a reboot`);
  if (doesNotBuild.length > 0) parts.push(`does not build on ${names(doesNotBuild)}`);
  const otherFailures = failedHosts.filter((f) => f.outcome !== "does-not-build");
  if (otherFailures.length > 0) parts.push(`no preview on ${names(otherFailures.map((f) => f.host))}`);
  if (doesNotBuild.length === 0 && affected.length > 0) {
    parts.push(buildsEverywhere ? "builds everywhere" : built.length > 0 ? `built on ${built.length} of ${affected.length}` : "not built yet");
  }
  const headline = parts.join(" · ");
  const max = opts.maxPackagesInText ?? 4;
  const pkgText = packages.slice(0, max).map(formatPackageChange).join(", ") + (packages.length > max ? ", …" : "");
  const sizeText = sizeDeltaBytes !== undefined && sizeDeltaBytes !== 0 ? formatSizeDelta(sizeDeltaBytes) : "";
  const tail = [pkgText, sizeText].filter(Boolean).join(" ");
  if (tail) parts.push(tail);

  return {
    pr,
    headSha,
    text: parts.join(" · "),
    headline,
    hosts: { total: all.length, previewed: current.size, affected: affected.length, notAffected: notAffected.length, doesNotBuild: doesNotBuild.length, pending: pending.length },
    notAffectedHosts: notAffected,
    rebootHosts,
    failedHosts,
    buildsEverywhere,
    packages,
    ...(sizeDeltaBytes !== undefined ? { sizeDeltaBytes } : {}),
    updatedAt: (opts.now ?? new Date()).toISOString(),
  };
}

/** Cut a text to `max` characters (Home Assistant's release summary holds 255), ending in "…". */
export function truncateText(text: string, max: number): string {
  const chars = [...text];
  return chars.length <= max ? text : chars.slice(0, max - 1).join("") + "…";
}

/**
 * The summary in at most `max` characters (Home Assistant's release summary holds 255): the
 * headline whole, then as many package changes as fit and "+N more", then the size change. Only a
 * headline that alone is too long is cut.
 */
export function fitPreviewSummary(s: Pick<PreviewSummary, "text" | "headline" | "packages" | "sizeDeltaBytes" | "notPreviewed">, max: number): string {
  if (s.notPreviewed !== undefined) return truncateText(s.notPreviewed, max);
  if (s.headline === undefined) return truncateText(s.text, max);
  const size = s.sizeDeltaBytes !== undefined && s.sizeDeltaBytes !== 0 ? formatSizeDelta(s.sizeDeltaBytes) : "";
  for (let n = s.packages.length; n >= 0; n--) {
    const shown = s.packages.slice(0, n).map(formatPackageChange);
    if (n < s.packages.length) shown.push(`+${s.packages.length - n} more`);
    const tail = [shown.join(", "), size].filter(Boolean).join(" ");
    const line = tail ? `${s.headline} · ${tail}` : s.headline;
    if ([...line].length <= max) return line;
  }
  return truncateText(s.headline, max);
}

/** Which previews automatic mode requires before it merges. */
export const PREVIEW_MERGE_POLICIES = ["all", "canary", "ignore"] as const;
export const PreviewMergePolicy = z.enum(PREVIEW_MERGE_POLICIES);
export type PreviewMergePolicy = z.infer<typeof PreviewMergePolicy>;

export interface PreviewGateHost {
  host: string;
  canary: boolean;
  /** Could a preview reach this host (online, or a builder previews for it)? */
  reachable: boolean;
}

/**
 * ok: merging is allowed. Not ok: `wait` when the only problem is previews still to come for this
 * head (asking again later can help), otherwise the previews say it must not be merged.
 */
export type PreviewVerdict = { ok: true } | { ok: false; wait: boolean; reason: string };

/**
 * Automatic mode merges only if the preview of the PR's current head built on every affected host
 * it could reach ("all"), on the canary hosts ("canary"), or not at all ("ignore"). Unreachable
 * hosts without a preview do not block; a reachable host without one makes it wait (its preview
 * is pending).
 */
export function previewMergeVerdict(policy: PreviewMergePolicy, pr: number, headSha: string, hosts: readonly PreviewGateHost[], previews: readonly HostPreview[]): PreviewVerdict {
  if (policy === "ignore") return { ok: true };
  const current = new Map(previews.filter((p) => p.pr === pr && p.headSha === headSha).map((p) => [p.host, p]));
  const considered = hosts.filter((h) => policy === "all" || h.canary);
  const pending: string[] = [];
  const problems: string[] = [];
  for (const h of considered) {
    const p = current.get(h.host);
    if (!p) {
      if (h.reachable) pending.push(`${h.host}: preview pending`);
      continue;
    }
    if (p.outcome === "not-affected") continue;
    if (p.outcome === "affected" && p.builds === true) continue;
    if (p.outcome === "affected") problems.push(`${h.host}: affected but not built`);
    else problems.push(`${h.host}: ${p.outcome === "does-not-build" ? "does not build" : p.outcome} (${previewReason(p)})`);
  }
  if (policy === "canary" && considered.length === 0) problems.push("no canary host to preview on");
  if (problems.length === 0 && pending.length === 0) return { ok: true };
  return { ok: false, wait: problems.length === 0, reason: `preview of PR #${pr} at ${headSha.slice(0, 7)} does not allow merging: ${[...problems, ...pending].join("; ")}` };
}

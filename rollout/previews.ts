/**
 * The hub's side of previews, as plain logic (no MQTT here): which host previews what for a
 * pending lock-update PR, which preview messages from agents to trust, and the book of current
 * previews per PR from which the fleet summary and the merge gate are computed.
 *
 * Trust: an agent publishes under its own host (hosts/<builtOn>/previews/<pr>/<host>). A preview
 * for another host is accepted only from a host whose retained info carries the `builder` tag.
 */
import {
  buildPreviewSummary,
  decodeJson,
  HostPreview,
  PreviewArgs,
  previewMergeVerdict,
  type HostInfo,
  type PreviewGateHost,
  type PreviewMergePolicy,
  type PreviewSummary,
  type PreviewVerdict,
} from "../protocol/index.js";

export const BUILDER_TAG = "builder";

export interface PreviewHost {
  info: HostInfo;
  online: boolean;
}

export interface PreviewPolicy {
  /** Who builds (not only evaluates): the canary hosts (default), every host, or none. */
  buildOn: "canary" | "all" | "none";
  /** Preview PRs that change more than flake.lock (off by default). */
  allowMoreThanLock: boolean;
  /** Preview PRs whose head is in a fork (off by default: their code is not the fleet's). */
  allowForks: boolean;
}

export const DEFAULT_PREVIEW_POLICY: PreviewPolicy = { buildOn: "canary", allowMoreThanLock: false, allowForks: false };

/**
 * Is the PR's head in another repository than the fleet's? GitHub compares owner/name without
 * regard to case. A head repository that is gone (null: a deleted fork) counts as a fork; an
 * absent one (a publisher that does not say) does not.
 */
export function comesFromFork(headRepo: string | null | undefined, fleetRepo: string): boolean {
  if (headRepo === undefined) return false;
  return headRepo === null || headRepo.toLowerCase() !== fleetRepo.toLowerCase();
}

export interface PreviewRequest {
  host: string;
  args: PreviewArgs;
}

export type PreviewPlan = { ok: true; requests: PreviewRequest[]; unreachable: string[] } | { ok: false; reason: string };

/**
 * What to ask of whom for PR `pr` at `headSha`: every online host previews itself; offline hosts
 * are previewed by an online `builder` (least loaded first), when there is one and it knows the
 * host's running system; the rest are unreachable (they do not block a merge).
 */
export function planPreviews(pr: { number: number; headSha: string; fromFork?: boolean }, hosts: readonly PreviewHost[], policy: PreviewPolicy = DEFAULT_PREVIEW_POLICY): PreviewPlan {
  if (pr.fromFork && !policy.allowForks) return { ok: false, reason: `PR #${pr.number} comes from a fork: not previewed (the hub's previews.allowForks is off)` };
  const build = (h: HostInfo) => policy.buildOn === "all" || (policy.buildOn === "canary" && h.canary);
  const online = hosts.filter((h) => h.online).sort((a, b) => a.info.host.localeCompare(b.info.host));
  const requests = new Map<string, PreviewRequest>();
  for (const h of online) {
    requests.set(h.info.host, { host: h.info.host, args: { pr: pr.number, headSha: pr.headSha, build: build(h.info), allowMoreThanLock: policy.allowMoreThanLock } });
  }
  const builders = online.filter((h) => h.info.tags.includes(BUILDER_TAG)).map((h) => h.info.host);
  const unreachable: string[] = [];
  for (const h of hosts.filter((x) => !x.online).sort((a, b) => a.info.host.localeCompare(b.info.host))) {
    if (builders.length === 0) {
      unreachable.push(h.info.host);
      continue;
    }
    const builder = builders.map((b) => requests.get(b)!).sort((a, b) => (a.args.forHosts?.length ?? 0) - (b.args.forHosts?.length ?? 0))[0]!;
    const forHosts = builder.args.forHosts ?? [];
    forHosts.push({ host: h.info.host, ...(h.info.systemPath ? { systemPath: h.info.systemPath } : {}) });
    builder.args = { ...builder.args, forHosts, build: true };
  }
  return { ok: true, requests: [...requests.values()], unreachable };
}

export type AcceptedPreview = { ok: true; preview: HostPreview } | { ok: false; reason: string };

/** Check a preview an agent published on hosts/<builtOn>/previews/<pr>/<host> before the hub republishes it. */
export function acceptHostPreview(topic: { builtOn: string; pr: number; host: string }, payload: Uint8Array | string, builtOnInfo: HostInfo | undefined): AcceptedPreview {
  const d = decodeJson(HostPreview, payload);
  if (!d.ok) return { ok: false, reason: `invalid preview from ${topic.builtOn}: ${d.error}` };
  const p = d.value;
  if (p.pr !== topic.pr || p.host !== topic.host || p.builtOn !== topic.builtOn) {
    return { ok: false, reason: `preview from ${topic.builtOn} does not match its topic (pr ${p.pr}, host ${p.host}, built on ${p.builtOn})` };
  }
  if (topic.builtOn !== topic.host && !builtOnInfo?.tags.includes(BUILDER_TAG)) {
    return { ok: false, reason: `${topic.builtOn} previewed ${topic.host} but has no "${BUILDER_TAG}" tag: ignored` };
  }
  return { ok: true, preview: p };
}

/** The current previews per PR. A new head of a PR drops the previews of the old one. */
export class PreviewBook {
  private readonly heads = new Map<number, string>();
  private readonly byPr = new Map<number, Map<string, HostPreview>>();

  /** Record the PR's current head; returns the hosts whose previews were dropped (to clear their topics). */
  setHead(pr: number, headSha: string): string[] {
    if (this.heads.get(pr) === headSha) return [];
    this.heads.set(pr, headSha);
    const old = this.byPr.get(pr);
    const dropped = old ? [...old.values()].filter((p) => p.headSha !== headSha).map((p) => p.host) : [];
    for (const h of dropped) old!.delete(h);
    return dropped;
  }

  head(pr: number): string | undefined {
    return this.heads.get(pr);
  }

  /** Keep a preview if it is of the PR's current head (or no head is known yet). */
  add(p: HostPreview): boolean {
    const head = this.heads.get(p.pr);
    if (head !== undefined && head !== p.headSha) return false;
    let m = this.byPr.get(p.pr);
    if (!m) this.byPr.set(p.pr, (m = new Map()));
    const prev = m.get(p.host);
    if (prev && prev.headSha === p.headSha && prev.finishedAt > p.finishedAt) return false;
    m.set(p.host, p);
    return true;
  }

  previews(pr: number): HostPreview[] {
    return [...(this.byPr.get(pr)?.values() ?? [])];
  }

  get(pr: number, host: string): HostPreview | undefined {
    return this.byPr.get(pr)?.get(host);
  }

  /** Forget a PR (merged or closed); returns its hosts to clear. */
  forget(pr: number): string[] {
    const hosts = [...(this.byPr.get(pr)?.keys() ?? [])];
    this.byPr.delete(pr);
    this.heads.delete(pr);
    return hosts;
  }

  prs(): number[] {
    return [...this.heads.keys()];
  }

  summary(pr: number, fleetHosts: readonly string[], now = new Date()): PreviewSummary | undefined {
    const head = this.heads.get(pr);
    return head === undefined ? undefined : buildPreviewSummary(pr, head, fleetHosts, this.previews(pr), { now });
  }

  verdict(policy: PreviewMergePolicy, pr: number, hosts: readonly PreviewGateHost[]): PreviewVerdict {
    const head = this.heads.get(pr);
    if (head === undefined) return policy === "ignore" ? { ok: true } : { ok: false, wait: true, reason: `PR #${pr} has not been previewed yet` };
    return previewMergeVerdict(policy, pr, head, hosts, this.previews(pr));
  }
}

/** Hosts a preview could reach: online, or offline with an online builder to preview for it. */
export function gateHosts(hosts: readonly PreviewHost[]): PreviewGateHost[] {
  const builderOnline = hosts.some((h) => h.online && h.info.tags.includes(BUILDER_TAG));
  return hosts.map((h) => ({ host: h.info.host, canary: h.info.canary, reachable: h.online || builderOnline }));
}

/** What the previews of a PR head tell a rollout of it (RolloutSpec.preview). */
export interface PreviewPlanHints {
  pr: number;
  headSha: string;
  /** Hosts whose system the head does not change. */
  notAffected: string[];
  /** Hosts that need a reboot, with what changed (kernel, initrd, modules). */
  reboot: Record<string, string[]>;
}

export function previewPlanHints(pr: number, headSha: string, previews: readonly HostPreview[]): PreviewPlanHints {
  const current = previews.filter((p) => p.pr === pr && p.headSha === headSha);
  const reboot: Record<string, string[]> = {};
  for (const p of current) if (p.outcome === "affected" && p.reboot?.needed) reboot[p.host] = p.reboot.changed;
  return { pr, headSha, notAffected: current.filter((p) => p.outcome === "not-affected").map((p) => p.host).sort(), reboot };
}

/**
 * Previews are of the PR head; a rollout deploys the merge commit, which differs (a merge commit,
 * a squash, a rebase). They carry over when the merged flake.lock is byte for byte the previewed
 * head's (equal lock hashes): a lock-update PR changes only flake.lock, so the merge commit then
 * locks exactly what was previewed. Anything else outside flake.lock that changed on the base
 * branch meanwhile is caught on the host: a host planned pull only evaluates the merge commit
 * after its pull and switches after all when that is not the system it runs (rollout/engine.ts).
 * Without both hashes, or with different ones, nothing carries over.
 */
export function carryOverPreview(hints: PreviewPlanHints | undefined, locks: { previewed?: string | undefined; merged?: string | undefined }): PreviewPlanHints | undefined {
  if (!hints || !locks.previewed || !locks.merged || locks.previewed !== locks.merged) return undefined;
  return hints;
}


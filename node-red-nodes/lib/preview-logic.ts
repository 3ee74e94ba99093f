/**
 * The preview node's work, without Node-RED: ask the fleet for a preview of a pending PR's head
 * (the hub's PreviewService; it asks each head only once), follow its progress, and resolve with the
 * preview once every host that could be asked has reported, or when the time is up.
 */
import { previewProgress, type HostPreview, type PendingUpdate, type PreviewProgress, type PreviewSummary } from "../../protocol/index.js";
import type { PreviewState } from "../../rollout/preview-service.js";
import { status } from "./status.js";
import type { NodeStatus } from "./red.js";

/** What the node needs of the PreviewService (the hub's, or the fleet node's own). */
export interface PreviewSource {
  request(pending: PendingUpdate): Promise<void>;
  state(pr: number): PreviewState | undefined;
  onChange(listener: (pr: number) => void): () => void;
}

/** What the node sends on: the PR head's fleet summary and each host's preview. */
export interface PreviewResult {
  pr: number;
  headSha: string;
  /** Every host that could be asked has reported (or the head is not previewed, see summary.notPreviewed). */
  complete: boolean;
  /** The wait ended at the node's timeout, before every host reported. */
  timedOut: boolean;
  /** null when the fleet has not started on this head (no summary yet). */
  summary: PreviewSummary | null;
  hosts: HostPreview[];
}

/** The PR head's state, if the summary is of this head (an older head's does not count). */
function current(source: PreviewSource, pr: number, headSha: string): { summary: PreviewSummary; previews: HostPreview[]; progress: PreviewProgress } | undefined {
  const s = source.state(pr);
  if (!s || s.summary.headSha !== headSha) return undefined;
  return { ...s, progress: previewProgress(s.summary) };
}

/** The status dot for where a preview is: requested / n of m hosts / done / does not build. */
export function previewStatus(pr: number, progress: PreviewProgress | undefined, summary?: PreviewSummary): NodeStatus {
  if (!progress) return status.working(`#${pr}: preview requested`);
  if (progress.notPreviewed) return status.waiting(`#${pr}: not previewed`);
  if (!progress.complete) return status.working(`#${pr}: ${progress.done} of ${progress.requested} hosts previewed`);
  if (progress.doesNotBuild > 0) {
    const failed = summary?.failedHosts.filter((f) => f.outcome === "does-not-build").map((f) => f.host) ?? [];
    return { fill: "red", shape: "dot", text: `#${pr}: does not build${failed.length ? ` on ${failed.join(", ")}` : ""}`.slice(0, 60) };
  }
  return status.ok(`#${pr}: previewed, affects ${summary ? summary.hosts.affected : "?"} of ${summary ? summary.hosts.total : "?"}`);
}

/** The status once the wait is over: the last progress, or "timed out" with how far it got. */
export function resultStatus(r: PreviewResult): NodeStatus {
  const progress = r.summary ? previewProgress(r.summary) : undefined;
  if (r.timedOut && !r.complete) return status.waiting(`#${r.pr}: timed out, ${progress ? `${progress.done} of ${progress.requested}` : "no"} hosts previewed`);
  return previewStatus(r.pr, progress, r.summary ?? undefined);
}

export interface WaitOptions {
  /** Give up waiting after this long and send what there is (complete: false). */
  timeoutMs: number;
  /** Each change of the preview's progress (for the node's status). */
  onStatus?: (s: NodeStatus) => void;
  /** Stops the wait (the node is closing): rejects. */
  signal?: AbortSignal;
}

/** Ask for a preview of `pending`'s head and wait until it is complete or the time is up. */
export async function awaitPreview(source: PreviewSource, pending: PendingUpdate, opts: WaitOptions): Promise<PreviewResult> {
  const { number: pr, headSha } = pending;
  opts.onStatus?.(previewStatus(pr, undefined));
  let unfollow: () => void = () => undefined;
  let timer: NodeJS.Timeout | undefined;
  let onAbort: (() => void) | undefined;
  try {
    return await new Promise<PreviewResult>((resolve, reject) => {
      const result = (timedOut: boolean): PreviewResult => {
        const c = current(source, pr, headSha);
        return { pr, headSha, complete: c?.progress.complete ?? false, timedOut, summary: c?.summary ?? null, hosts: c?.previews ?? [] };
      };
      const check = () => {
        const c = current(source, pr, headSha);
        opts.onStatus?.(previewStatus(pr, c?.progress, c?.summary));
        if (c?.progress.complete) resolve(result(false));
      };
      unfollow = source.onChange((changed) => changed === pr && check());
      timer = setTimeout(() => resolve(result(true)), opts.timeoutMs);
      onAbort = () => reject(new Error(`preview of PR #${pr}: the node closed while waiting`));
      if (opts.signal?.aborted) return onAbort();
      opts.signal?.addEventListener("abort", onAbort, { once: true });
      // A head already previewed completes at once; a new one is asked for first.
      source.request(pending).then(check, reject);
    });
  } finally {
    unfollow();
    clearTimeout(timer);
    if (onAbort) opts.signal?.removeEventListener("abort", onAbort);
  }
}

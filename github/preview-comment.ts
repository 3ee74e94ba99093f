/**
 * The preview table as one comment on the PR (hub config previews.githubComment): host, affected,
 * builds, reboot, package changes, size. There is only ever one such comment per PR: it carries a
 * hidden marker, is found by it (also after a hub restart) and edited in place when the preview
 * changes; an unchanged preview sends nothing at all.
 *
 * Everything in a cell comes from agents (package names, build errors): it is escaped so it cannot
 * break the table or inject markup, and the whole comment is bounded below GitHub's 65,536 characters.
 */
import type { Logger } from "pino";
import { previewProgress, previewRow, type HostPreview, type PreviewSummary } from "../protocol/index.js";
import type { GitHubClient } from "./client.js";
import { GitHubError } from "./errors.js";

/** How the comment is found again: an HTML comment GitHub does not show. */
export const PREVIEW_COMMENT_MARKER = "<!-- lockstep:preview -->";
/** GitHub refuses comment bodies over 65,536 characters; stay well below. */
const MAX_BODY = 60_000;
/** Package changes listed per host before "+N more". */
const MAX_PACKAGES_PER_HOST = 25;
const MAX_CELL = 2_000;

/** Text from the wire inside a table cell: no pipes, no line breaks, no markup. */
function cell(text: string): string {
  const t = text.length > MAX_CELL ? `${text.slice(0, MAX_CELL - 1)}…` : text;
  return t.replace(/&/g, "&amp;").replace(/</g, "&lt;").replace(/>/g, "&gt;").replace(/\|/g, "\\|").replace(/\r?\n/g, " ").replace(/([\\`*_[\]])/g, "\\$1") || " ";
}

/** A fenced block that the text cannot close (a fence longer than any backtick run in it). */
function fenced(text: string): string {
  const longest = Math.max(0, ...[...text.matchAll(/`+/g)].map((m) => m[0].length));
  const fence = "`".repeat(Math.max(3, longest + 1));
  return `${fence}\n${text}\n${fence}`;
}

/** The comment's markdown for the PR head's summary and host previews (no timestamps: the same preview gives the same text). */
export function previewCommentBody(summary: PreviewSummary, previews: readonly HostPreview[]): string {
  const head = summary.headSha.slice(0, 7);
  const lines = [PREVIEW_COMMENT_MARKER, `### Lockstep preview of \`${head}\``, "", cell(summary.text), ""];
  if (summary.notPreviewed) return [...lines, "Nothing was previewed for this head."].join("\n");
  const rows = [...previews].filter((p) => p.headSha === summary.headSha).sort((a, b) => a.host.localeCompare(b.host)).map((p) => previewRow(p, { reasonLines: 12 }));
  lines.push("| host | affected | builds | reboot | package changes | size |", "| --- | --- | --- | --- | --- | --- |");
  for (const r of rows) {
    const pkgs = r.packages.slice(0, MAX_PACKAGES_PER_HOST).map(cell);
    if (r.packages.length > MAX_PACKAGES_PER_HOST) pkgs.push(`+${r.packages.length - MAX_PACKAGES_PER_HOST} more`);
    const changes = r.reason ? `**${cell(r.outcome === "does-not-build" ? "does not build" : r.outcome)}**` : pkgs.join("<br>") || "—";
    const host = `${cell(r.host)}${r.builtElsewhere ? ` (${cell(r.builtElsewhere)})` : ""}`;
    const builds = r.builds === "no" ? "**no**" : r.builds;
    lines.push(`| ${host} | ${r.affected} | ${builds} | ${cell(r.reboot)} | ${changes} | ${r.size || " "} |`);
  }
  for (const r of rows.filter((x) => x.reason)) {
    lines.push("", `<details><summary>${cell(r.host)}: why</summary>`, "", fenced(r.reason), "", "</details>");
  }
  const waiting = summary.hosts.total - rows.length;
  if (waiting > 0) {
    const unreachable = summary.unreachable ?? [];
    lines.push("", `_${waiting} host${waiting === 1 ? "" : "s"} not previewed${unreachable.length ? ` (offline, no builder: ${unreachable.map(cell).join(", ")})` : ""}._`);
  }
  const body = lines.join("\n");
  return body.length > MAX_BODY ? `${body.slice(0, MAX_BODY)}\n\n_(cut: the preview is longer than a comment holds)_` : body;
}

export type CommentResult = "created" | "updated" | "unchanged";

/** The GitHub calls the comment needs (GitHubClient has them, with its throttling and retries). */
export type CommentClient = Pick<GitHubClient, "listIssueComments" | "createIssueComment" | "updateIssueComment">;

/**
 * Keeps the one preview comment per PR. Calls run one at a time, so two changes in quick
 * succession can never both create a comment.
 */
export class PreviewComments {
  /** What this hub last knows the PR's comment says (its id and body). */
  private readonly known = new Map<number, { id: number; body: string }>();
  private chain: Promise<unknown> = Promise.resolve();

  constructor(
    private readonly client: CommentClient,
    private readonly log: Logger,
  ) {}

  /** Make the PR's preview comment say `body`: create it, edit it, or (the same text) send nothing. */
  publish(pr: number, body: string): Promise<CommentResult> {
    const run = this.chain.then(() => this.publishOne(pr, body));
    this.chain = run.catch(() => undefined);
    return run;
  }

  /** Resolves once every write asked for so far has been made (or has failed). */
  async idle(): Promise<void> {
    await this.chain;
  }

  /** A PR no longer pending: forget its comment (it stays on GitHub as the last word). */
  forget(pr: number): void {
    this.known.delete(pr);
  }

  private async publishOne(pr: number, body: string): Promise<CommentResult> {
    let known = this.known.get(pr);
    if (known?.body === body) return "unchanged";
    if (!known) {
      // First time this hub writes for the PR: an earlier run (or another hub) may have left one.
      const existing = (await this.client.listIssueComments(pr)).find((c) => c.body?.startsWith(PREVIEW_COMMENT_MARKER));
      if (existing) known = { id: existing.id, body: existing.body ?? "" };
      if (known?.body === body) {
        this.known.set(pr, known);
        return "unchanged";
      }
    }
    if (known) {
      try {
        const c = await this.client.updateIssueComment(known.id, body);
        this.known.set(pr, { id: c.id, body });
        this.log.info({ pr, comment: c.id }, "preview comment updated");
        return "updated";
      } catch (err) {
        // Someone deleted it: write a new one (the only one again).
        if (!(err instanceof GitHubError && err.status === 404)) throw err;
        this.known.delete(pr);
      }
    }
    const c = await this.client.createIssueComment(pr, body);
    this.known.set(pr, { id: c.id, body });
    this.log.info({ pr, comment: c.id, url: c.html_url }, "preview comment created");
    return "created";
  }
}

/** Where previews come from (the hub's PreviewService has these). */
export interface PreviewFeed {
  state(pr: number): { summary: PreviewSummary; previews: HostPreview[] } | undefined;
  onChange(listener: (pr: number) => void): () => void;
}

/**
 * Comment on each PR once its preview is complete (every host that could be asked has reported, or
 * the head is not previewed at all), and again whenever the finished preview changes (a new head).
 * A half-done preview is not written: it would be edited once per host. Returns the unsubscribe.
 */
export function commentOnPreviews(feed: PreviewFeed, comments: PreviewComments, log: Logger): () => void {
  return feed.onChange((pr) => {
    const s = feed.state(pr);
    if (!s) return comments.forget(pr);
    if (!previewProgress(s.summary).complete) return;
    comments.publish(pr, previewCommentBody(s.summary, s.previews)).catch((err: unknown) => log.warn({ err, pr }, "cannot write the preview comment on the PR"));
  });
}

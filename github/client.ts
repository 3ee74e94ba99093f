/**
 * GitHubClient: the only place that talks HTTP to GitHub.
 *
 * - @octokit/rest with the throttling plugin (waits on 403/429 rate limits using retry-after /
 *   x-ratelimit-reset) and the retry plugin (5xx with backoff).
 * - Conditional requests: every GET remembers its ETag per URL and sends If-None-Match next
 *   time; a 304 returns the remembered body. GitHub does not count 304s against the rate limit,
 *   so polling an unchanged repository is free after the first poll.
 * - Bounded: every HTTP attempt has a timeout (`requestTimeoutMs`, default 30 s), so a request
 *   GitHub never answers fails as `github-timeout` instead of holding its caller forever.
 * - Few at a time, never a queue behind one call: up to `maxConcurrentRequests` (default 4) run
 *   at once per client, so one slow answer does not stall detection or a merge. Writes are spaced
 *   `writeSpacingMs` apart (GitHub asks for that to avoid its secondary rate limit).
 * - Writes are never retried on 5xx or a timeout (a merge may have happened although the answer
 *   was lost); reads are retried with backoff. Failed calls are reported to `onFailure` listeners.
 * - Octokit's per-request log lines go to debug: a 304 is the normal answer to a poll.
 * - Every response body is validated with zod (only the fields Lockstep reads); failures are
 *   typed GitHubErrors with a hint.
 */
import { Octokit } from "@octokit/rest";
import { throttling } from "@octokit/plugin-throttling";
import { retry } from "@octokit/plugin-retry";
import { RequestError } from "@octokit/request-error";
import Bottleneck from "bottleneck";
import type { Logger } from "pino";
import { z } from "zod";
import { createGitHubLogger, type GitHubConfig, type MergeMethod } from "./config.js";
import { GitHubError, gitHubErrorFor, timeoutError } from "./errors.js";

const LockstepOctokit = Octokit.plugin(throttling, retry);
type OctokitInstance = InstanceType<typeof LockstepOctokit>;

export interface GitHubClientOptions {
  logger?: Logger;
  /** Retries of 5xx answers (retry plugin). Default 3. */
  retries?: number;
  /** Base of the retry backoff in ms: waits are (n+1)^2 * base. Default 1000. */
  retryBaseMs?: number;
  /** Multiplier turning rate-limit seconds into ms (tests shrink it). Default 1000. */
  rateLimitBaseMs?: number;
  /** Longest rate-limit wait (seconds) to sit out before giving up with an error. Default 60. */
  maxRateLimitWaitSeconds?: number;
  /** Retries after a rate-limit answer. Default 2. */
  rateLimitRetries?: number;
  /** Minimum ms between writes (GitHub asks for >= 1 s between content-creating requests). Default 1000. */
  writeSpacingMs?: number;
  /** Longest wait for one HTTP attempt (connect to the end of the body), in ms. Default 30 000. */
  requestTimeoutMs?: number;
  /** Requests in flight at once for this client. Default 4. */
  maxConcurrentRequests?: number;
}

/** Told about every call that failed (after its retries); the hub turns these into audit events. */
export type GitHubFailureListener = (error: GitHubError) => void;

/**
 * Told about every call's answer (the last one, after the retry plugin's retries): its status
 * (undefined when there was none: a timeout, a refused connection) and x-ratelimit-remaining when
 * GitHub sent it. The hub's metrics count these.
 */
export type GitHubResponseListener = (status: number | undefined, rateLimitRemaining: number | undefined) => void;

export interface RateLimitInfo {
  limit?: number;
  remaining?: number;
  /** Unix seconds. */
  reset?: number;
}

export interface ClientStats {
  /** Requests sent (including retries). */
  requests: number;
  /** Answered 304 from the ETag cache (free). */
  notModified: number;
  /** Rate-limit waits: seconds GitHub told us to wait, in order. */
  rateLimitWaits: number[];
}

// ---------------------------------------------------------------------------------------------
// Response shapes: only what Lockstep reads. Unknown fields are ignored (GitHub adds fields).

const sha = z.string().regex(/^[0-9a-f]{40}$/);
const isoDate = z.string().min(1);

export const PullSummary = z.object({
  number: z.number().int().positive(),
  title: z.string(),
  body: z.string().nullable(),
  html_url: z.string(),
  state: z.enum(["open", "closed"]),
  created_at: isoDate,
  updated_at: isoDate,
  labels: z.array(z.object({ name: z.string() })),
  /** head.repo is null when the head's repository (a fork) was deleted. */
  head: z.object({ ref: z.string(), sha, repo: z.object({ full_name: z.string() }).nullable().optional() }),
  base: z.object({ ref: z.string(), sha }),
  user: z.object({ login: z.string() }).nullable(),
});
export type PullSummary = z.infer<typeof PullSummary>;

export const PullDetail = PullSummary.extend({
  merged: z.boolean(),
  mergeable: z.boolean().nullable(),
  mergeable_state: z.string(),
  merge_commit_sha: z.string().nullable(),
});
export type PullDetail = z.infer<typeof PullDetail>;

export const PullFile = z.object({ filename: z.string(), status: z.string(), sha: z.string().nullable().optional() });
export type PullFile = z.infer<typeof PullFile>;

const ContentFile = z.object({ type: z.literal("file"), sha: z.string(), encoding: z.string(), content: z.string(), size: z.number() });

export const CombinedStatus = z.object({
  state: z.string(),
  total_count: z.number().int(),
  statuses: z.array(z.object({ state: z.enum(["error", "failure", "pending", "success"]), context: z.string(), description: z.string().nullable().optional() })),
});
export type CombinedStatus = z.infer<typeof CombinedStatus>;

/** GitHub's largest page, and how many pages a list is read to at most (1,000 items). */
const PER_PAGE = 100;
const MAX_PAGES = 10;

export const CheckRunList = z.object({
  total_count: z.number().int(),
  check_runs: z.array(z.object({ name: z.string(), status: z.string(), conclusion: z.string().nullable() })),
});
export type CheckRunList = z.infer<typeof CheckRunList>;

const GitRef = z.object({ ref: z.string(), object: z.object({ sha }) });
const GitCommit = z.object({ sha, message: z.string(), parents: z.array(z.object({ sha })) });
const MergeResult = z.object({ sha, merged: z.boolean(), message: z.string() });
export const IssueComment = z.object({ id: z.number().int(), body: z.string().nullable().optional(), html_url: z.string() });
export type IssueComment = z.infer<typeof IssueComment>;
const FileCommit = z.object({ content: z.object({ sha: z.string() }).nullable(), commit: z.object({ sha }) });

export interface FileAtRef {
  /** Exact bytes of the file. */
  bytes: Buffer;
  text: string;
  /** Blob sha: what a contents PUT needs to replace the file. */
  blobSha: string;
}

interface RawResponse {
  status: number;
  url: string;
  headers: Record<string, unknown>;
  data: unknown;
}
type RawOptions = Record<string, unknown> & { method: string; headers: Record<string, string> };
type RawRequest = (options: RawOptions) => Promise<RawResponse>;

/** What @octokit/plugin-request-log writes per answer: "GET /path - 304 with id … in 3ms". */
const OCTOKIT_REQUEST_LINE = /^[A-Z]+ \S+ - \d+ with id \S+ in \d+ms$/;

/** ETag cache size: a poll touches ~10 URLs; old shas' URLs fall out. */
const MAX_ETAG_ENTRIES = 500;

interface CachedResponse {
  etag: string;
  response: RawResponse;
}

export class GitHubClient {
  readonly octokit: OctokitInstance;
  readonly logger: Logger;
  readonly stats: ClientStats = { requests: 0, notModified: 0, rateLimitWaits: [] };
  rateLimit: RateLimitInfo = {};
  private readonly etags = new Map<string, CachedResponse>();
  private readonly failureListeners = new Set<GitHubFailureListener>();
  private readonly responseListeners = new Set<GitHubResponseListener>();
  private readonly retries: number;
  private readonly requestTimeoutMs: number;

  constructor(readonly config: GitHubConfig, opts: GitHubClientOptions = {}) {
    this.logger = (opts.logger ?? createGitHubLogger()).child({ component: "github-client", repo: `${config.owner}/${config.repo}` });
    const log = this.logger;
    const maxWait = opts.maxRateLimitWaitSeconds ?? 60;
    const rateLimitRetries = opts.rateLimitRetries ?? 2;
    const onLimit = (kind: string) => (retryAfter: number, options: { method?: string; url?: string }, _o: unknown, retryCount: number) => {
      this.stats.rateLimitWaits.push(retryAfter);
      const willRetry = retryCount < rateLimitRetries && retryAfter <= maxWait;
      log.warn({ kind, retryAfterSeconds: retryAfter, method: options.method, route: options.url, retryCount, willRetry }, `GitHub ${kind} rate limit: ${willRetry ? `waiting ${retryAfter}s` : "giving up"}`);
      return willRetry;
    };
    const writeSpacing = opts.writeSpacingMs ?? 1000;
    this.retries = opts.retries ?? 3;
    const timeoutMs = (this.requestTimeoutMs = opts.requestTimeoutMs ?? 30_000);
    // Each attempt (a retry is a new one) gets its own deadline, joined with the caller's signal.
    const timedFetch: typeof fetch = (url, init) => {
      const deadline = AbortSignal.timeout(timeoutMs);
      return fetch(url, { ...init, signal: init?.signal ? AbortSignal.any([init.signal, deadline]) : deadline });
    };
    this.octokit = new LockstepOctokit({
      auth: config.token.reveal(),
      baseUrl: config.apiBaseUrl,
      userAgent: config.userAgent,
      request: { fetch: timedFetch },
      log: {
        debug: () => undefined,
        info: () => undefined,
        warn: (message: string) => log.warn({ source: "octokit" }, message),
        // The request-log plugin reports every non-2xx answer here, 304s included; failures that
        // matter reach the caller as GitHubErrors (and onFailure), so these lines are debug.
        error: (message: string) => (OCTOKIT_REQUEST_LINE.test(message) ? log.debug({ source: "octokit" }, message) : log.error({ source: "octokit" }, message)),
      },
      throttle: {
        onRateLimit: onLimit("primary"),
        onSecondaryRateLimit: onLimit("secondary"),
        retryAfterBaseValue: opts.rateLimitBaseMs ?? 1000,
        // Own groups per client (the plugin's defaults are process-wide: 10 requests in flight for
        // every client together, and notifications spaced 3 s).
        global: new Bottleneck.Group({ maxConcurrent: opts.maxConcurrentRequests ?? 4 }),
        write: new Bottleneck.Group({ maxConcurrent: 1, minTime: writeSpacing }),
        notifications: new Bottleneck.Group({ maxConcurrent: 1, minTime: writeSpacing }),
      },
      retry: {
        retries: this.retries,
        retryAfterBaseValue: opts.retryBaseMs ?? 1000,
        // 405/409 are answers about the PR, not transient failures; 403/429 belong to throttling.
        doNotRetry: [400, 401, 403, 404, 405, 409, 410, 422, 429, 451],
      },
    });
    this.octokit.hook.wrap("request", (request, options) => this.conditional(request as unknown as RawRequest, options as unknown as RawOptions) as unknown as ReturnType<typeof request>);
  }

  /** Be told about every failed call (returns a function that stops it). */
  onFailure(listener: GitHubFailureListener): () => void {
    this.failureListeners.add(listener);
    return () => this.failureListeners.delete(listener);
  }

  /** Be told about every call's answer, or its absence (returns a function that stops it). */
  onResponse(listener: GitHubResponseListener): () => void {
    this.responseListeners.add(listener);
    return () => this.responseListeners.delete(listener);
  }

  /** Forget cached ETags (e.g. after a config change). */
  clearCache(): void {
    this.etags.clear();
  }

  /** Add If-None-Match for known GETs; turn a 304 into the remembered response. */
  private async conditional(request: RawRequest, options: RawOptions): Promise<RawResponse> {
    const started = performance.now();
    const parsed = this.octokit.request.endpoint.parse(options as unknown as Parameters<OctokitInstance["request"]["endpoint"]["parse"]>[0]);
    const key = `${parsed.method} ${parsed.url}`;
    const path = new URL(parsed.url).pathname;
    const cached = parsed.method === "GET" ? this.etags.get(key) : undefined;
    if (cached) options.headers = { ...options.headers, "if-none-match": cached.etag };
    this.stats.requests++;
    try {
      const response = await request(options);
      this.noteRateLimit(response.headers);
      this.noteResponse(response.status, response.headers);
      const etag = response.headers.etag;
      if (parsed.method === "GET" && typeof etag === "string") this.remember(key, { etag, response });
      this.logger.debug({ method: parsed.method, path, status: response.status, ms: Math.round(performance.now() - started) }, "github request");
      return response;
    } catch (e) {
      if (e instanceof RequestError && e.status === 304 && cached) {
        this.stats.notModified++;
        this.remember(key, cached);
        if (e.response) this.noteRateLimit(e.response.headers as Record<string, unknown>);
        this.noteResponse(304, e.response?.headers as Record<string, unknown> | undefined);
        this.logger.debug({ method: parsed.method, path, status: 304, ms: Math.round(performance.now() - started) }, "github request (not modified)");
        return { ...cached.response, status: 304 };
      }
      if (e instanceof RequestError && e.response) this.noteRateLimit(e.response.headers as Record<string, unknown>);
      this.noteResponse(e instanceof RequestError && e.response ? e.status : undefined, e instanceof RequestError ? (e.response?.headers as Record<string, unknown> | undefined) : undefined);
      this.logger.debug({ method: parsed.method, path, status: e instanceof RequestError ? e.status : undefined, ms: Math.round(performance.now() - started) }, "github request failed");
      throw e;
    }
  }

  /** Keep the most recently used ETag entries (URLs with old shas stop being asked for). */
  private remember(key: string, entry: CachedResponse): void {
    this.etags.delete(key);
    this.etags.set(key, entry);
    if (this.etags.size > MAX_ETAG_ENTRIES) this.etags.delete(this.etags.keys().next().value!);
  }

  private noteResponse(status: number | undefined, headers: Record<string, unknown> | undefined): void {
    if (this.responseListeners.size === 0) return;
    const remaining = headers?.["x-ratelimit-remaining"] === undefined ? undefined : Number(headers["x-ratelimit-remaining"]);
    for (const listener of this.responseListeners) {
      try {
        listener(status, remaining !== undefined && Number.isFinite(remaining) ? remaining : undefined);
      } catch (err) {
        this.logger.error({ err }, "a GitHub response listener failed");
      }
    }
  }

  private noteRateLimit(headers: Record<string, unknown>): void {
    const num = (k: string) => (headers[k] === undefined ? undefined : Number(headers[k]));
    const limit = num("x-ratelimit-limit");
    if (limit === undefined) return;
    this.rateLimit = { limit, remaining: num("x-ratelimit-remaining"), reset: num("x-ratelimit-reset") };
  }

  /**
   * One REST call, validated. `route` is Octokit's "METHOD /path/{param}" form; owner and repo
   * are filled in from the config. Throws GitHubError.
   */
  async call<T>(route: string, params: Record<string, unknown>, schema: z.ZodType<T>): Promise<{ data: T; status: number; notModified: boolean }> {
    let response: { status: number; data: unknown };
    // Writes are not retried on 5xx: a merge or PR creation may have happened although the
    // answer failed; the caller detects again instead of repeating it blindly.
    const isWrite = !route.startsWith("GET ");
    const retried = isWrite ? 0 : this.retries;
    try {
      response = await this.octokit.request(route, { owner: this.config.owner, repo: this.config.repo, ...params, ...(isWrite ? { request: { retries: 0 } } : {}) });
    } catch (e) {
      throw this.failed(this.errorFor(e, route, isWrite, retried));
    }
    const parsed = schema.safeParse(response.data);
    if (!parsed.success) {
      const issue = parsed.error.issues[0]!;
      throw this.failed(new GitHubError(
        `GitHub ${route} answered with an unexpected shape at ${issue.path.join(".") || "(top)"}: ${issue.message}`,
        "github-invalid-response",
        response.status,
        route,
        "check apiBaseUrl points at the GitHub REST API (https://api.github.com or https://HOST/api/v3)",
      ));
    }
    return { data: parsed.data, status: response.status, notModified: response.status === 304 };
  }

  private errorFor(e: unknown, route: string, isWrite: boolean, retried: number): GitHubError {
    // @octokit/request wraps fetch's TimeoutError (our deadline) in a RequestError with status 500.
    const timedOut = (x: unknown) => x instanceof Error && x.name === "TimeoutError";
    if (timedOut(e) || (e instanceof RequestError && !e.response && timedOut(e.cause))) {
      return timeoutError(route, this.requestTimeoutMs, isWrite, retried, e);
    }
    if (e instanceof RequestError) {
      const data = e.response?.data as { message?: unknown } | undefined;
      const message = typeof data?.message === "string" ? data.message : undefined;
      // @octokit/request reports fetch failures as status 500 without a response.
      return gitHubErrorFor(e.response ? e.status : undefined, route, message ?? (e.response ? undefined : e.message), e, { isWrite, retried });
    }
    return gitHubErrorFor(undefined, route, (e as Error).message, e, { isWrite, retried });
  }

  /** Tell the failure listeners (a listener that throws is logged, never breaks the call). */
  private failed(error: GitHubError): GitHubError {
    for (const listener of this.failureListeners) {
      try {
        listener(error);
      } catch (err) {
        this.logger.error({ err }, "a GitHub failure listener threw");
      }
    }
    return error;
  }

  // -------------------------------------------------------------------------------------------
  // The REST subset Lockstep uses

  /**
   * Open PRs against `base`, oldest first, read page by page (up to MAX_PAGES × 100): with more than
   * 100 open, the week's lock update is not on the first page. Pages are read newest first, so a
   * repository with more than the cap loses its oldest PRs, never the new update; a PR that moved
   * between pages while they were read is listed once. Each page has its own ETag, so an unchanged
   * repository still costs no rate limit.
   */
  async listOpenPulls(base = this.config.baseBranch): Promise<PullSummary[]> {
    const byNumber = new Map<number, PullSummary>();
    for (let page = 1; page <= MAX_PAGES; page++) {
      const r = await this.call("GET /repos/{owner}/{repo}/pulls", { state: "open", base, sort: "created", direction: "desc", per_page: PER_PAGE, page }, z.array(PullSummary));
      for (const pr of r.data) byNumber.set(pr.number, pr);
      if (r.data.length < PER_PAGE) break;
    }
    return [...byNumber.values()].reverse();
  }

  async getPull(number: number): Promise<PullDetail> {
    return (await this.call("GET /repos/{owner}/{repo}/pulls/{pull_number}", { pull_number: number }, PullDetail)).data;
  }

  /** Files a PR changes (first 100; a lock update touches one). */
  async listPullFiles(number: number): Promise<PullFile[]> {
    return (await this.call("GET /repos/{owner}/{repo}/pulls/{pull_number}/files", { pull_number: number, per_page: 100 }, z.array(PullFile))).data;
  }

  /** A file's exact bytes at a ref (branch, tag or sha) via the contents API. */
  async getFile(path: string, ref: string): Promise<FileAtRef> {
    const r = await this.call("GET /repos/{owner}/{repo}/contents/{path}", { path, ref }, ContentFile);
    if (r.data.encoding !== "base64") {
      throw new GitHubError(`GitHub returned ${path} with encoding "${r.data.encoding}"`, "github-invalid-response", r.status, "GET /repos/{owner}/{repo}/contents/{path}", "files over 1 MB need the git blobs API; a flake.lock that large is unusual");
    }
    const bytes = Buffer.from(r.data.content.replace(/\s+/g, ""), "base64");
    return { bytes, text: bytes.toString("utf8"), blobSha: r.data.sha };
  }

  async getCombinedStatus(ref: string): Promise<CombinedStatus> {
    return (await this.call("GET /repos/{owner}/{repo}/commits/{ref}/status", { ref, per_page: 100 }, CombinedStatus)).data;
  }

  /** Every check run of a commit: a failing one on a later page must not read as green. */
  async listCheckRuns(ref: string): Promise<CheckRunList> {
    const route = "GET /repos/{owner}/{repo}/commits/{ref}/check-runs";
    const first = (await this.call(route, { ref, per_page: PER_PAGE, page: 1 }, CheckRunList)).data;
    const runs = [...first.check_runs];
    for (let page = 2; runs.length < first.total_count && page <= MAX_PAGES; page++) {
      const next = (await this.call(route, { ref, per_page: PER_PAGE, page }, CheckRunList)).data.check_runs;
      if (next.length === 0) break;
      runs.push(...next);
    }
    return { total_count: first.total_count, check_runs: runs };
  }

  /** The commit sha a branch points at. */
  async getBranchHead(branch = this.config.baseBranch): Promise<string> {
    return (await this.call("GET /repos/{owner}/{repo}/git/ref/{ref}", { ref: `heads/${branch}` }, GitRef)).data.object.sha;
  }

  async getCommit(commitSha: string): Promise<{ sha: string; message: string; parents: string[] }> {
    const c = (await this.call("GET /repos/{owner}/{repo}/git/commits/{commit_sha}", { commit_sha: commitSha }, GitCommit)).data;
    return { sha: c.sha, message: c.message, parents: c.parents.map((p) => p.sha) };
  }

  /** PUT .../merge with the head-SHA guard. Returns the new commit sha on the base branch. */
  async mergePull(number: number, p: { sha: string; method: MergeMethod; commitTitle?: string; commitMessage?: string }): Promise<string> {
    const params: Record<string, unknown> = { pull_number: number, sha: p.sha, merge_method: p.method };
    if (p.commitTitle !== undefined) params.commit_title = p.commitTitle;
    if (p.commitMessage !== undefined) params.commit_message = p.commitMessage;
    return (await this.call("PUT /repos/{owner}/{repo}/pulls/{pull_number}/merge", params, MergeResult)).data.sha;
  }

  async createBranch(branch: string, atSha: string): Promise<void> {
    await this.call("POST /repos/{owner}/{repo}/git/refs", { ref: `refs/heads/${branch}`, sha: atSha }, GitRef);
  }

  /** Replace a file on a branch with exact bytes; `blobSha` is the file's current blob (optimistic lock). */
  async putFile(p: { path: string; branch: string; bytes: Buffer; blobSha: string; message: string }): Promise<{ commitSha: string; blobSha: string | undefined }> {
    const r = await this.call(
      "PUT /repos/{owner}/{repo}/contents/{path}",
      { path: p.path, branch: p.branch, message: p.message, content: p.bytes.toString("base64"), sha: p.blobSha },
      FileCommit,
    );
    return { commitSha: r.data.commit.sha, blobSha: r.data.content?.sha };
  }

  async createPull(p: { title: string; head: string; base: string; body: string }): Promise<{ number: number; url: string }> {
    const r = await this.call("POST /repos/{owner}/{repo}/pulls", p, PullSummary);
    return { number: r.data.number, url: r.data.html_url };
  }

  /** A PR's (issue's) comments, oldest first, up to MAX_PAGES × 100. */
  async listIssueComments(number: number): Promise<IssueComment[]> {
    const all: IssueComment[] = [];
    for (let page = 1; page <= MAX_PAGES; page++) {
      const r = await this.call("GET /repos/{owner}/{repo}/issues/{issue_number}/comments", { issue_number: number, per_page: PER_PAGE, page }, z.array(IssueComment));
      all.push(...r.data);
      if (r.data.length < PER_PAGE) break;
    }
    return all;
  }

  async createIssueComment(number: number, body: string): Promise<IssueComment> {
    return (await this.call("POST /repos/{owner}/{repo}/issues/{issue_number}/comments", { issue_number: number, body }, IssueComment)).data;
  }

  async updateIssueComment(commentId: number, body: string): Promise<IssueComment> {
    return (await this.call("PATCH /repos/{owner}/{repo}/issues/comments/{comment_id}", { comment_id: commentId, body }, IssueComment)).data;
  }
}

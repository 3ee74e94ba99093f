/**
 * A local GitHub: the REST subset Lockstep uses, backed by a REAL bare git repository (the test
 * fleet's origin). PR heads are real branches; contents come from git objects; a merge is a real
 * git merge that moves the base branch; contents PUT and git refs POST write real commits/refs.
 * Pull requests, commit statuses and check runs live in memory and are driven by test helpers.
 *
 * Like GitHub it sends ETags and answers If-None-Match with 304 (which costs no rate limit),
 * returns x-ratelimit-* headers, and counts requests. Faults (5xx, 403 rate limit, 405/409/422,
 * slow or stalled responses) can be injected per path. A `validate` hook sees every response (the tests plug
 * in the OpenAPI checker); violations are collected in `contractViolations`.
 *
 * Standalone (the demo): `const gh = await start({ repo: fleet, owner: "acme", name: "fleet" })`.
 */
import { createServer, type IncomingMessage, type ServerResponse } from "node:http";
import type { AddressInfo } from "node:net";
import { createHash, createHmac, randomUUID } from "node:crypto";
import { BareRepo, MergeConflict, type ChangedFile } from "./git.js";

export type CommitState = "error" | "failure" | "pending" | "success";
export type CheckStatus = "queued" | "in_progress" | "completed";
export type CheckConclusion = "success" | "failure" | "neutral" | "cancelled" | "skipped" | "timed_out" | "action_required";

export interface FaultSpec {
  /** Substring of the request path, or a RegExp on it (path without query). */
  path: string | RegExp;
  method?: string;
  /** HTTP status to answer with. Omit for a pure delay. */
  status?: 403 | 405 | 409 | 422 | 429 | 500 | 502 | 503;
  /** For 403/429: answer like GitHub's primary rate limit (x-ratelimit-remaining: 0 + reset). */
  rateLimit?: "primary" | "secondary";
  /** Seconds until x-ratelimit-reset (primary) or the retry-after value (secondary). Default 1. */
  waitSeconds?: number;
  message?: string;
  /** How many matching requests get the fault. Default 1. */
  times?: number;
  delayMs?: number;
  /** Never answer: the request hangs until the client gives up (closes the connection) or the server stops. */
  stall?: boolean;
}

export interface ResponseValidator {
  (r: { method: string; pathTemplate: string; status: number; body: unknown; contentType?: string }): string[];
}

export interface RequestValidator {
  (r: { method: string; pathTemplate: string; body: unknown }): string[];
}

export interface LocalGitHubOptions {
  /** The bare repository (a path, or anything with `origin`, e.g. a FleetRepo). */
  repo: string | { origin: string };
  owner: string;
  name: string;
  port?: number;
  host?: string;
  defaultBranch?: string;
  /** When set, requests must carry this token (Authorization: token|Bearer ...), else 401. */
  token?: string;
  validate?: ResponseValidator;
  /** Sees every JSON request body that reached a route (the tests plug in the OpenAPI checker). */
  validateRequest?: RequestValidator;
  rateLimit?: number;
}

export interface RequestRecord {
  method: string;
  path: string;
  route: string;
  status: number;
  /** False for 304s: GitHub does not count them against the rate limit. */
  countsAgainstRateLimit: boolean;
}

interface PullRecord {
  number: number;
  id: number;
  title: string;
  body: string | null;
  headRef: string;
  baseRef: string;
  labels: string[];
  author: string;
  createdAt: string;
  updatedAt: string;
  state: "open" | "closed";
  merged: boolean;
  mergedAt: string | null;
  mergeCommitSha: string | null;
  closedAt: string | null;
  /** Head sha at merge/close time; open PRs read their branch live. */
  frozenHeadSha: string | null;
  mergeable: { value: boolean | null; times: number | null } | null;
  /** A fork's "owner/name" when the head is in a fork (its branch lives in this bare repo too). */
  headRepo?: string;
}

interface StatusRecord {
  id: number;
  state: CommitState;
  context: string;
  description: string | null;
  targetUrl: string | null;
  createdAt: string;
  updatedAt: string;
}

interface CommentRecord {
  id: number;
  issue: number;
  body: string;
  author: string;
  createdAt: string;
  updatedAt: string;
}

interface CheckRunRecord {
  id: number;
  sha: string;
  name: string;
  status: CheckStatus;
  conclusion: CheckConclusion | null;
  startedAt: string;
  completedAt: string | null;
}

interface Reply {
  status: number;
  body?: unknown;
  headers?: Record<string, string>;
}

class HttpError extends Error {
  constructor(readonly status: number, message: string, readonly extra: Record<string, unknown> = {}) {
    super(message);
  }
}

type Handler = (ctx: { params: Record<string, string>; query: URLSearchParams; body: unknown; method: string }) => Promise<Reply>;

interface Route {
  method: string;
  template: string;
  regex: RegExp;
  keys: string[];
  handler: Handler;
}

const DOCS = "https://docs.github.com/rest";
const now = () => new Date().toISOString().replace(/\.\d{3}Z$/, "Z");

function compileTemplate(template: string, greedyLast: boolean): { regex: RegExp; keys: string[] } {
  const keys: string[] = [];
  const parts = template.split(/(\{[a-z_]+\})/);
  let src = "";
  parts.forEach((part, i) => {
    const m = /^\{([a-z_]+)\}$/.exec(part);
    if (!m) src += part.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    else {
      keys.push(m[1]!);
      const last = i >= parts.length - 2;
      src += greedyLast && last ? "(.+)" : "([^/]+)";
    }
  });
  return { regex: new RegExp(`^${src}$`), keys };
}

export class LocalGitHub {
  readonly owner: string;
  readonly name: string;
  readonly git: BareRepo;
  readonly defaultBranch: string;
  /** Every request, in order. */
  readonly requests: RequestRecord[] = [];
  /** OpenAPI (or other validator) problems found in responses. Tests assert this stays empty. */
  readonly contractViolations: string[] = [];
  url = "";

  private readonly server = createServer((req, res) => void this.handle(req, res));
  private readonly routes: Route[] = [];
  private readonly pulls = new Map<number, PullRecord>();
  private readonly statuses = new Map<string, Map<string, StatusRecord>>();
  private readonly checkRuns = new Map<string, CheckRunRecord[]>();
  /** Issue (PR) comments by id; `issue` is the PR number. */
  private readonly comments = new Map<number, CommentRecord>();
  private readonly faults: (FaultSpec & { remaining: number })[] = [];
  /** Requests held by a `stall` fault; released (closed unanswered) on stop. */
  private readonly stalled = new Set<() => void>();
  private readonly webhooks: { url: string; secret: string }[] = [];
  private readonly rateLimitTotal: number;
  private readonly rateLimitReset = Math.floor(Date.now() / 1000) + 3600;
  private rateLimitUsed = 0;
  private nextId = 1000;
  private nextNumber = 1;
  /** Git writes (merge, commit, ref) one at a time, like GitHub's per-ref locking. */
  private writeChain: Promise<unknown> = Promise.resolve();

  constructor(private readonly opts: LocalGitHubOptions) {
    this.owner = opts.owner;
    this.name = opts.name;
    this.git = new BareRepo(typeof opts.repo === "string" ? opts.repo : opts.repo.origin);
    this.defaultBranch = opts.defaultBranch ?? "main";
    this.rateLimitTotal = opts.rateLimit ?? 5000;
    this.defineRoutes();
  }

  get fullName(): string {
    return `${this.owner}/${this.name}`;
  }

  async listen(port = 0, host = "127.0.0.1"): Promise<void> {
    await new Promise<void>((resolve) => this.server.listen(port, host, resolve));
    const addr = this.server.address() as AddressInfo;
    this.url = `http://${host}:${addr.port}`;
  }

  async stop(): Promise<void> {
    for (const release of this.stalled) release();
    this.stalled.clear();
    this.server.closeAllConnections();
    await new Promise<void>((resolve) => this.server.close(() => resolve()));
  }

  // -------------------------------------------------------------------------------------------
  // Test helpers

  /** Open a PR from an existing branch of the bare repo. Returns its number. */
  async openPullRequest(p: { head: string; title: string; labels?: string[]; body?: string; base?: string; author?: string; createdAt?: Date; /** From a fork: its "owner/name". */ headRepo?: string }): Promise<number> {
    if (!(await this.git.branchHead(p.head))) throw new Error(`branch ${p.head} does not exist in the bare repo`);
    const n = this.nextNumber++;
    const at = p.createdAt ? p.createdAt.toISOString().replace(/\.\d{3}Z$/, "Z") : now();
    this.pulls.set(n, {
      number: n,
      id: this.nextId++,
      title: p.title,
      body: p.body ?? null,
      headRef: p.head,
      baseRef: p.base ?? this.defaultBranch,
      labels: p.labels ?? [],
      author: p.author ?? "github-actions[bot]",
      createdAt: at,
      updatedAt: at,
      state: "open",
      merged: false,
      mergedAt: null,
      mergeCommitSha: null,
      closedAt: null,
      frozenHeadSha: null,
      mergeable: null,
      ...(p.headRepo !== undefined ? { headRepo: p.headRepo } : {}),
    });
    void this.deliver("pull_request", { action: "opened", number: n, pull_request: await this.pullJson(this.pulls.get(n)!, false) });
    return n;
  }

  /** Close a PR without merging. */
  async closePullRequest(n: number): Promise<void> {
    const pr = this.mustPull(n);
    pr.frozenHeadSha = await this.headSha(pr);
    pr.state = "closed";
    pr.closedAt = pr.updatedAt = now();
    void this.deliver("pull_request", { action: "closed", number: n, pull_request: await this.pullJson(pr, false) });
  }

  /** Set a commit status (latest per context wins, like GitHub). */
  setStatus(sha: string, state: CommitState, context = "ci/test", description: string | null = null): void {
    const perSha = this.statuses.get(sha) ?? new Map<string, StatusRecord>();
    this.statuses.set(sha, perSha);
    const prev = perSha.get(context);
    const at = now();
    perSha.set(context, { id: this.nextId++, state, context, description, targetUrl: null, createdAt: prev?.createdAt ?? at, updatedAt: at });
    void this.deliver("status", { id: this.nextId++, sha, state, context, description, target_url: null, commit: { sha } });
  }

  /** Add a check run (what GitHub Actions reports). Returns its id for updateCheckRun. */
  addCheckRun(sha: string, run: { name: string; status?: CheckStatus; conclusion?: CheckConclusion | null }): number {
    const status = run.status ?? (run.conclusion ? "completed" : "queued");
    const rec: CheckRunRecord = {
      id: this.nextId++,
      sha,
      name: run.name,
      status,
      conclusion: status === "completed" ? (run.conclusion ?? "success") : null,
      startedAt: now(),
      completedAt: status === "completed" ? now() : null,
    };
    this.checkRuns.set(sha, [...(this.checkRuns.get(sha) ?? []), rec]);
    void this.deliver("check_run", { action: status === "completed" ? "completed" : "created", check_run: { id: rec.id, name: rec.name, head_sha: sha, status, conclusion: rec.conclusion } });
    return rec.id;
  }

  updateCheckRun(id: number, patch: { status?: CheckStatus; conclusion?: CheckConclusion | null }): void {
    for (const runs of this.checkRuns.values()) {
      const rec = runs.find((r) => r.id === id);
      if (!rec) continue;
      if (patch.status) rec.status = patch.status;
      if (patch.conclusion !== undefined) rec.conclusion = patch.conclusion;
      if (rec.status === "completed") {
        rec.completedAt = now();
        rec.conclusion ??= "success";
      }
      void this.deliver("check_run", { action: rec.status === "completed" ? "completed" : "created", check_run: { id, name: rec.name, head_sha: rec.sha, status: rec.status, conclusion: rec.conclusion } });
      return;
    }
    throw new Error(`no check run ${id}`);
  }

  /**
   * Override `mergeable`: null = GitHub is "computing" (for `times` requests, then back to the
   * real answer), true/false = forced. Without an override mergeability is a real merge test.
   */
  setMergeable(n: number, value: boolean | null, times?: number): void {
    this.mustPull(n).mergeable = { value, times: times ?? null };
  }

  injectFault(f: FaultSpec): void {
    this.faults.push({ ...f, remaining: f.times ?? 1 });
  }

  clearFaults(): void {
    this.faults.length = 0;
  }

  /** Deliver signed webhooks (pull_request, status, check_run, push) to this URL. */
  addWebhook(url: string, secret: string): void {
    this.webhooks.push({ url, secret });
  }

  /** Announce a push done directly to the bare repo (tests that push with git, not the API). */
  async notifyPush(branch: string): Promise<void> {
    const sha = await this.git.branchHead(branch);
    void this.deliver("push", { ref: `refs/heads/${branch}`, after: sha });
    for (const pr of this.pulls.values()) {
      if (pr.state === "open" && pr.headRef === branch) {
        pr.updatedAt = now();
        void this.deliver("pull_request", { action: "synchronize", number: pr.number, pull_request: await this.pullJson(pr, false) });
      }
    }
  }

  /** Numbers of the open PRs. */
  openPullNumbers(): number[] {
    return [...this.pulls.values()].filter((p) => p.state === "open").map((p) => p.number);
  }

  pullRequest(n: number): Readonly<PullRecord> {
    return this.mustPull(n);
  }

  /** Requests so far, requests that cost rate limit, and 304s. */
  stats(): { requests: number; rateLimited: number; notModified: number } {
    const rateLimited = this.requests.filter((r) => r.countsAgainstRateLimit).length;
    return { requests: this.requests.length, rateLimited, notModified: this.requests.length - rateLimited };
  }

  resetStats(): void {
    this.requests.length = 0;
  }

  // -------------------------------------------------------------------------------------------
  // HTTP plumbing

  private route(method: string, template: string, handler: Handler, greedyLast = false): void {
    this.routes.push({ method, template, handler, ...compileTemplate(template, greedyLast) });
  }

  private async handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const method = (req.method ?? "GET").toUpperCase();
    const url = new URL(req.url ?? "/", "http://localhost");
    // GitHub Enterprise Server serves the same API under /api/v3.
    const path = url.pathname.replace(/^\/api\/v3(?=\/)/, "");
    let template = "(unmatched)";
    let reply: Reply;
    let isFault = false;
    try {
      const raw = await readBody(req);
      const fault = this.takeFault(method, path);
      if (fault?.delayMs) await new Promise((r) => setTimeout(r, fault.delayMs));
      if (fault?.stall) {
        await new Promise<void>((resolve) => {
          this.stalled.add(resolve);
          res.once("close", () => resolve());
        });
        this.requests.push({ method, path, route: "(stalled)", status: 0, countsAgainstRateLimit: false });
        res.destroy();
        return;
      }
      const matched = this.match(method, path);
      if (matched) template = matched.route.template;
      if (this.opts.token !== undefined && !this.authorized(req)) {
        reply = { status: 401, body: { message: "Bad credentials", documentation_url: DOCS, status: "401" } };
      } else if (fault?.status) {
        isFault = true;
        reply = this.faultReply(fault);
      } else if (!matched) {
        reply = { status: 404, body: { message: "Not Found", documentation_url: DOCS, status: "404" } };
      } else {
        let body: unknown = undefined;
        if (raw.length) {
          try {
            body = JSON.parse(raw.toString("utf8"));
          } catch {
            throw new HttpError(400, "Problems parsing JSON");
          }
        }
        if (this.opts.validateRequest) this.contractViolations.push(...this.opts.validateRequest({ method, pathTemplate: matched.route.template, body }));
        reply = await matched.route.handler({ params: matched.params, query: url.searchParams, body, method });
      }
    } catch (e) {
      if (e instanceof HttpError) {
        const body: Record<string, unknown> = { message: e.message, documentation_url: DOCS, status: String(e.status), ...e.extra };
        reply = { status: e.status, body };
      } else {
        reply = { status: 500, body: { message: `local GitHub error: ${(e as Error).message}`, documentation_url: DOCS, status: "500" } };
      }
    }
    this.send(req, res, method, path, template, reply, isFault);
  }

  private send(req: IncomingMessage, res: ServerResponse, method: string, path: string, template: string, reply: Reply, isFault: boolean): void {
    const json = reply.body === undefined ? "" : JSON.stringify(reply.body);
    const headers: Record<string, string> = {
      "content-type": "application/json; charset=utf-8",
      "x-github-api-version-selected": "2022-11-28",
      "x-github-request-id": randomUUID(),
      ...reply.headers,
    };
    let status = reply.status;
    if (method === "GET" && status === 200) {
      const etag = `W/"${createHash("sha256").update(json).digest("hex").slice(0, 40)}"`;
      headers.etag = etag;
      const ifNoneMatch = req.headers["if-none-match"];
      if (typeof ifNoneMatch === "string" && ifNoneMatch.split(/\s*,\s*/).includes(etag)) status = 304;
    }
    const counts = status !== 304;
    if (counts && !headers["x-ratelimit-remaining"]) this.rateLimitUsed++;
    if (!headers["x-ratelimit-remaining"]) {
      Object.assign(headers, {
        "x-ratelimit-limit": String(this.rateLimitTotal),
        "x-ratelimit-remaining": String(Math.max(0, this.rateLimitTotal - this.rateLimitUsed)),
        "x-ratelimit-reset": String(this.rateLimitReset),
        "x-ratelimit-used": String(this.rateLimitUsed),
        "x-ratelimit-resource": "core",
      });
    }
    this.requests.push({ method, path, route: template, status, countsAgainstRateLimit: counts });
    if (this.opts.validate && template !== "(unmatched)" && status !== 401) {
      const problems = this.opts.validate({ method, pathTemplate: template, status, body: status === 304 ? undefined : reply.body, contentType: headers["content-type"] });
      if (problems.length && !isFault) this.contractViolations.push(...problems);
      else if (problems.length) this.contractViolations.push(...problems.map((p) => `(injected fault) ${p}`));
    }
    if (status === 304) {
      delete headers["content-type"];
      res.writeHead(304, headers).end();
      return;
    }
    res.writeHead(status, headers).end(json);
  }

  private authorized(req: IncomingMessage): boolean {
    const auth = req.headers.authorization ?? "";
    const m = /^(?:token|bearer)\s+(.+)$/i.exec(auth);
    return Boolean(m && m[1] === this.opts.token);
  }

  private match(method: string, path: string): { route: Route; params: Record<string, string> } | null {
    for (const route of this.routes) {
      if (route.method !== method) continue;
      const m = route.regex.exec(path);
      if (!m) continue;
      const params: Record<string, string> = {};
      route.keys.forEach((k, i) => (params[k] = decodeURIComponent(m[i + 1]!)));
      if (params.owner !== undefined && (params.owner !== this.owner || params.repo !== this.name)) continue;
      return { route, params };
    }
    return null;
  }

  private takeFault(method: string, path: string): FaultSpec | undefined {
    const i = this.faults.findIndex(
      (f) => f.remaining > 0 && (!f.method || f.method.toUpperCase() === method) && (typeof f.path === "string" ? path.includes(f.path) : f.path.test(path)),
    );
    if (i < 0) return undefined;
    const f = this.faults[i]!;
    if (--f.remaining <= 0) this.faults.splice(i, 1);
    return f;
  }

  private faultReply(f: FaultSpec): Reply {
    const status = f.status!;
    const wait = f.waitSeconds ?? 1;
    if ((status === 403 || status === 429) && f.rateLimit !== undefined) {
      if (f.rateLimit === "primary") {
        return {
          status,
          body: { message: f.message ?? "API rate limit exceeded for installation.", documentation_url: DOCS },
          headers: {
            "x-ratelimit-limit": String(this.rateLimitTotal),
            "x-ratelimit-remaining": "0",
            "x-ratelimit-reset": String(Math.floor(Date.now() / 1000) + wait),
            "x-ratelimit-used": String(this.rateLimitTotal),
            "x-ratelimit-resource": "core",
          },
        };
      }
      return {
        status,
        body: { message: f.message ?? "You have exceeded a secondary rate limit. Please wait a few minutes before you try again.", documentation_url: DOCS },
        headers: { "retry-after": String(wait) },
      };
    }
    const defaults: Record<number, string> = {
      403: "Resource not accessible by integration",
      405: "Pull Request is not mergeable",
      409: "Head branch was modified. Review and try the merge again.",
      422: "Validation Failed",
      429: "Too Many Requests",
      500: "Internal Server Error",
      502: "Server Error",
      503: "Service Unavailable",
    };
    return { status, body: { message: f.message ?? defaults[status] ?? "Error", documentation_url: DOCS, status: String(status) } };
  }

  private serialWrite<T>(fn: () => Promise<T>): Promise<T> {
    const next = this.writeChain.then(fn, fn);
    this.writeChain = next.catch(() => undefined);
    return next;
  }

  private async deliver(event: string, payload: Record<string, unknown>): Promise<void> {
    if (!this.webhooks.length) return;
    const body = JSON.stringify({ ...payload, repository: { id: 1, name: this.name, full_name: this.fullName, owner: { login: this.owner } }, sender: { login: "local-github" } });
    for (const hook of this.webhooks) {
      const signature = `sha256=${createHmac("sha256", hook.secret).update(body).digest("hex")}`;
      try {
        await fetch(hook.url, {
          method: "POST",
          headers: { "content-type": "application/json", "x-github-event": event, "x-github-delivery": randomUUID(), "x-hub-signature-256": signature, "user-agent": "GitHub-Hookshot/local" },
          body,
        });
      } catch {
        // GitHub also just records a failed delivery; the receiver's poll is the fallback.
      }
    }
  }

  /** A PR's comments as a test sees them (oldest first). */
  issueComments(issue: number): Array<{ id: number; body: string; createdAt: string; updatedAt: string }> {
    return [...this.comments.values()].filter((c) => c.issue === issue).map(({ id, body, createdAt, updatedAt }) => ({ id, body, createdAt, updatedAt }));
  }

  /** Issue comments: list (paged, oldest first), create, edit. PRs are issues on GitHub. */
  private defineCommentRoutes(R: string): void {
    const requireBody = (body: unknown): string => {
      const b = (body ?? {}) as Record<string, unknown>;
      if (typeof b.body !== "string" || !b.body) throw new HttpError(422, "Validation Failed", { errors: [{ resource: "IssueComment", field: "body", code: "missing_field" }] });
      if (b.body.length > 65536) throw new HttpError(422, "Validation Failed", { errors: [{ resource: "IssueComment", field: "body", code: "custom", message: "body is too long (maximum is 65536 characters)" }] });
      return b.body;
    };
    this.route("GET", `${R}/issues/{issue_number}/comments`, async ({ params, query }) => {
      const issue = this.mustPull(Number(params.issue_number)).number;
      const perPage = Math.min(100, Number(query.get("per_page") ?? 30) || 30);
      const page = Math.max(1, Number(query.get("page") ?? 1) || 1);
      const list = [...this.comments.values()].filter((c) => c.issue === issue).slice((page - 1) * perPage, page * perPage);
      return { status: 200, body: list.map((c) => this.commentJson(c)) };
    });
    this.route("POST", `${R}/issues/{issue_number}/comments`, async ({ params, body }) => {
      const issue = this.mustPull(Number(params.issue_number)).number;
      const at = now();
      const c: CommentRecord = { id: this.nextId++, issue, body: requireBody(body), author: "lockstep", createdAt: at, updatedAt: at };
      this.comments.set(c.id, c);
      return { status: 201, body: this.commentJson(c) };
    });
    this.route("PATCH", `${R}/issues/comments/{comment_id}`, async ({ params, body }) => {
      const c = this.comments.get(Number(params.comment_id));
      if (!c) throw new HttpError(404, "Not Found");
      c.body = requireBody(body);
      c.updatedAt = now();
      return { status: 200, body: this.commentJson(c) };
    });
  }

  private commentJson(c: CommentRecord): Record<string, unknown> {
    return {
      id: c.id,
      node_id: `IC_${c.id}`,
      url: this.api(`/issues/comments/${c.id}`),
      html_url: this.html(`/pull/${c.issue}#issuecomment-${c.id}`),
      body: c.body,
      user: this.userJson(c.author),
      created_at: c.createdAt,
      updated_at: c.updatedAt,
      issue_url: this.api(`/issues/${c.issue}`),
      author_association: "NONE",
    };
  }

  // -------------------------------------------------------------------------------------------
  // Resource shapes (as GitHub returns them; checked against the OpenAPI description in tests)

  private api(rest: string): string {
    return `${this.url}/repos/${this.fullName}${rest}`;
  }

  private html(rest: string): string {
    return `${this.url}/${this.fullName}${rest}`;
  }

  private userJson(login: string): Record<string, unknown> {
    const u = `${this.url}/users/${encodeURIComponent(login)}`;
    return {
      login,
      id: login.length * 1000 + 7,
      node_id: `U_${Buffer.from(login).toString("base64url")}`,
      avatar_url: `${this.url}/avatars/${encodeURIComponent(login)}`,
      gravatar_id: "",
      url: u,
      html_url: `${this.url}/${encodeURIComponent(login)}`,
      followers_url: `${u}/followers`,
      following_url: `${u}/following{/other_user}`,
      gists_url: `${u}/gists{/gist_id}`,
      starred_url: `${u}/starred{/owner}{/repo}`,
      subscriptions_url: `${u}/subscriptions`,
      organizations_url: `${u}/orgs`,
      repos_url: `${u}/repos`,
      events_url: `${u}/events{/privacy}`,
      received_events_url: `${u}/received_events`,
      type: login.endsWith("[bot]") ? "Bot" : "User",
      site_admin: false,
    };
  }

  private repoJson(): Record<string, unknown> {
    const a = this.api("");
    const t = "2026-01-01T00:00:00Z";
    return {
      id: 4242,
      node_id: "R_lockstep",
      name: this.name,
      full_name: this.fullName,
      owner: this.userJson(this.owner),
      private: true,
      html_url: this.html(""),
      description: "Lockstep fleet flake (local GitHub)",
      fork: false,
      url: a,
      archive_url: `${a}/{archive_format}{/ref}`,
      assignees_url: `${a}/assignees{/user}`,
      blobs_url: `${a}/git/blobs{/sha}`,
      branches_url: `${a}/branches{/branch}`,
      collaborators_url: `${a}/collaborators{/collaborator}`,
      comments_url: `${a}/comments{/number}`,
      commits_url: `${a}/commits{/sha}`,
      compare_url: `${a}/compare/{base}...{head}`,
      contents_url: `${a}/contents/{+path}`,
      contributors_url: `${a}/contributors`,
      deployments_url: `${a}/deployments`,
      downloads_url: `${a}/downloads`,
      events_url: `${a}/events`,
      forks_url: `${a}/forks`,
      git_commits_url: `${a}/git/commits{/sha}`,
      git_refs_url: `${a}/git/refs{/sha}`,
      git_tags_url: `${a}/git/tags{/sha}`,
      git_url: `git://localhost/${this.fullName}.git`,
      issue_comment_url: `${a}/issues/comments{/number}`,
      issue_events_url: `${a}/issues/events{/number}`,
      issues_url: `${a}/issues{/number}`,
      keys_url: `${a}/keys{/key_id}`,
      labels_url: `${a}/labels{/name}`,
      languages_url: `${a}/languages`,
      merges_url: `${a}/merges`,
      milestones_url: `${a}/milestones{/number}`,
      notifications_url: `${a}/notifications{?since,all,participating}`,
      pulls_url: `${a}/pulls{/number}`,
      releases_url: `${a}/releases{/id}`,
      ssh_url: `git@localhost:${this.fullName}.git`,
      stargazers_url: `${a}/stargazers`,
      statuses_url: `${a}/statuses/{sha}`,
      subscribers_url: `${a}/subscribers`,
      subscription_url: `${a}/subscription`,
      tags_url: `${a}/tags`,
      teams_url: `${a}/teams`,
      trees_url: `${a}/git/trees{/sha}`,
      clone_url: `file://${this.git.path}`,
      mirror_url: null,
      hooks_url: `${a}/hooks`,
      svn_url: this.html(""),
      homepage: null,
      language: "Nix",
      forks_count: 0,
      forks: 0,
      stargazers_count: 0,
      watchers_count: 0,
      watchers: 0,
      size: 1,
      default_branch: this.defaultBranch,
      open_issues_count: [...this.pulls.values()].filter((p) => p.state === "open").length,
      open_issues: [...this.pulls.values()].filter((p) => p.state === "open").length,
      is_template: false,
      topics: [],
      has_issues: true,
      has_projects: false,
      has_wiki: false,
      has_pages: false,
      has_downloads: false,
      archived: false,
      disabled: false,
      visibility: "private",
      pushed_at: t,
      created_at: t,
      updated_at: t,
      license: null,
      allow_forking: false,
      web_commit_signoff_required: false,
    };
  }

  private minimalRepoJson(): Record<string, unknown> {
    return this.repoJson();
  }

  private mustPull(n: number): PullRecord {
    const pr = this.pulls.get(n);
    if (!pr) throw new HttpError(404, "Not Found");
    return pr;
  }

  private async headSha(pr: PullRecord): Promise<string> {
    if (pr.frozenHeadSha) return pr.frozenHeadSha;
    const sha = await this.git.branchHead(pr.headRef);
    if (!sha) throw new HttpError(404, `head branch ${pr.headRef} is gone`);
    return sha;
  }

  private labelJson(name: string): Record<string, unknown> {
    const id = [...name].reduce((h, c) => (h * 31 + c.charCodeAt(0)) >>> 0, 7);
    return { id, node_id: `LA_${id}`, url: this.api(`/labels/${encodeURIComponent(name)}`), name, description: `${name} (label)`, color: "ededed", default: false };
  }

  private async mergeableOf(pr: PullRecord, consume: boolean): Promise<{ mergeable: boolean | null; state: string }> {
    if (pr.state === "closed") return { mergeable: null, state: "unknown" };
    let value: boolean | null | undefined;
    if (pr.mergeable) {
      value = pr.mergeable.value;
      if (pr.mergeable.times !== null && consume && --pr.mergeable.times <= 0) pr.mergeable = null;
    }
    const head = await this.headSha(pr);
    if (value === undefined) {
      const base = await this.git.branchHead(pr.baseRef);
      value = base ? await this.git.mergesCleanly(base, head) : false;
    }
    if (value === null) return { mergeable: null, state: "unknown" };
    if (!value) return { mergeable: false, state: "dirty" };
    const ci = this.combinedState(head);
    const runs = this.checkRuns.get(head) ?? [];
    const failing = ci === "failure" || runs.some((r) => r.conclusion && ["failure", "timed_out", "cancelled"].includes(r.conclusion));
    return { mergeable: true, state: failing ? "unstable" : "clean" };
  }

  /**
   * A PR's head as GitHub shows it: in this repository, or in a fork. (Real GitHub sends head.repo
   * null once a fork is deleted, which its OpenAPI description does not allow: not served here.)
   */
  private pullHeadJson(pr: PullRecord, headSha: string, repo: Record<string, unknown>): Record<string, unknown> {
    if (pr.headRepo === undefined) return { label: `${this.owner}:${pr.headRef}`, ref: pr.headRef, sha: headSha, user: this.userJson(this.owner), repo };
    const [owner, name] = pr.headRepo.split("/") as [string, string];
    const fork = { ...repo, id: 4243, node_id: "R_fork", name, full_name: pr.headRepo, owner: this.userJson(owner), fork: true };
    return { label: `${owner}:${pr.headRef}`, ref: pr.headRef, sha: headSha, user: this.userJson(owner), repo: fork };
  }

  private async pullJson(pr: PullRecord, full: boolean, consumeMergeable = false): Promise<Record<string, unknown>> {
    const headSha = await this.headSha(pr);
    const baseSha = (await this.git.branchHead(pr.baseRef)) ?? headSha;
    const repo = this.repoJson();
    const u = this.api(`/pulls/${pr.number}`);
    const issue = this.api(`/issues/${pr.number}`);
    const simple: Record<string, unknown> = {
      url: u,
      id: pr.id,
      node_id: `PR_${pr.id}`,
      html_url: this.html(`/pull/${pr.number}`),
      diff_url: this.html(`/pull/${pr.number}.diff`),
      patch_url: this.html(`/pull/${pr.number}.patch`),
      issue_url: issue,
      commits_url: `${u}/commits`,
      review_comments_url: `${u}/comments`,
      review_comment_url: this.api("/pulls/comments{/number}"),
      comments_url: `${issue}/comments`,
      statuses_url: this.api(`/statuses/${headSha}`),
      number: pr.number,
      state: pr.state,
      locked: false,
      title: pr.title,
      user: this.userJson(pr.author),
      body: pr.body,
      labels: pr.labels.map((l) => this.labelJson(l)),
      milestone: null,
      active_lock_reason: null,
      created_at: pr.createdAt,
      updated_at: pr.updatedAt,
      closed_at: pr.closedAt,
      merged_at: pr.mergedAt,
      merge_commit_sha: pr.mergeCommitSha,
      assignee: null,
      assignees: [],
      requested_reviewers: [],
      requested_teams: [],
      head: this.pullHeadJson(pr, headSha, repo),
      base: { label: `${this.owner}:${pr.baseRef}`, ref: pr.baseRef, sha: baseSha, user: this.userJson(this.owner), repo },
      _links: {
        self: { href: u },
        html: { href: this.html(`/pull/${pr.number}`) },
        issue: { href: issue },
        comments: { href: `${issue}/comments` },
        review_comments: { href: `${u}/comments` },
        review_comment: { href: this.api("/pulls/comments{/number}") },
        commits: { href: `${u}/commits` },
        statuses: { href: this.api(`/statuses/${headSha}`) },
      },
      author_association: "CONTRIBUTOR",
      auto_merge: null,
      draft: false,
    };
    if (!full) return simple;
    const { mergeable, state } = await this.mergeableOf(pr, consumeMergeable);
    const files = pr.state === "open" ? await this.git.changedFiles(baseSha, headSha) : [];
    return {
      ...simple,
      merged: pr.merged,
      mergeable,
      rebaseable: mergeable,
      mergeable_state: state,
      merged_by: pr.merged ? this.userJson("lockstep") : null,
      comments: 0,
      review_comments: 0,
      maintainer_can_modify: false,
      commits: 1,
      additions: files.reduce((s, f) => s + f.additions, 0),
      deletions: files.reduce((s, f) => s + f.deletions, 0),
      changed_files: files.length,
    };
  }

  private combinedState(sha: string): CommitState {
    const list = [...(this.statuses.get(sha)?.values() ?? [])];
    if (list.some((s) => s.state === "error" || s.state === "failure")) return "failure";
    if (list.length === 0 || list.some((s) => s.state === "pending")) return "pending";
    return "success";
  }

  private fileJson(path: string, ref: string, blobSha: string, bytes: Buffer | null): Record<string, unknown> {
    const name = path.split("/").pop()!;
    const self = `${this.api(`/contents/${path}`)}?ref=${encodeURIComponent(ref)}`;
    const git = this.api(`/git/blobs/${blobSha}`);
    const html = this.html(`/blob/${ref}/${path}`);
    const out: Record<string, unknown> = {
      type: "file",
      size: bytes?.length ?? 0,
      name,
      path,
      sha: blobSha,
      url: self,
      git_url: git,
      html_url: html,
      download_url: `${this.url}/raw/${this.fullName}/${ref}/${path}`,
      _links: { self, git, html },
    };
    if (bytes) {
      // GitHub wraps base64 at 60 columns with "\n"; clients must strip it.
      out.encoding = "base64";
      out.content = (bytes.toString("base64").match(/.{1,60}/g) ?? [""]).join("\n") + "\n";
    }
    return out;
  }

  private async gitCommitJson(sha: string): Promise<Record<string, unknown>> {
    const c = await this.git.commitInfo(sha);
    if (!c) throw new HttpError(404, "Not Found");
    return {
      sha: c.sha,
      node_id: `C_${c.sha}`,
      url: this.api(`/git/commits/${c.sha}`),
      html_url: this.html(`/commit/${c.sha}`),
      author: { name: c.author.name, email: c.author.email, date: new Date(c.author.date).toISOString().replace(/\.\d{3}Z$/, "Z") },
      committer: { name: c.committer.name, email: c.committer.email, date: new Date(c.committer.date).toISOString().replace(/\.\d{3}Z$/, "Z") },
      tree: { sha: c.tree, url: this.api(`/git/trees/${c.tree}`) },
      message: c.message.replace(/\n+$/, ""),
      parents: c.parents.map((p) => ({ sha: p, url: this.api(`/git/commits/${p}`), html_url: this.html(`/commit/${p}`) })),
      verification: { verified: false, reason: "unsigned", signature: null, payload: null, verified_at: null },
    };
  }

  private refJson(branch: string, sha: string): Record<string, unknown> {
    return {
      ref: `refs/heads/${branch}`,
      node_id: `REF_${Buffer.from(branch).toString("base64url")}`,
      url: this.api(`/git/refs/heads/${branch}`),
      object: { type: "commit", sha, url: this.api(`/git/commits/${sha}`) },
    };
  }

  private diffEntryJson(f: ChangedFile, headSha: string): Record<string, unknown> {
    return {
      sha: f.blobSha,
      filename: f.filename,
      status: f.status,
      additions: f.additions,
      deletions: f.deletions,
      changes: f.additions + f.deletions,
      blob_url: this.html(`/blob/${headSha}/${f.filename}`),
      raw_url: this.html(`/raw/${headSha}/${f.filename}`),
      contents_url: `${this.api(`/contents/${f.filename}`)}?ref=${headSha}`,
    };
  }

  private async resolveRefParam(ref: string | null): Promise<string> {
    const name = ref ?? this.defaultBranch;
    const sha = /^[0-9a-f]{40}$/.test(name)
      ? await this.git.resolveCommit(name)
      : ((await this.git.branchHead(name.replace(/^refs\/heads\//, ""))) ?? (await this.git.resolveCommit(name.startsWith("refs/") ? name : `refs/tags/${name}`)));
    if (!sha) throw new HttpError(404, `No commit found for the ref ${name}`);
    return sha;
  }

  // -------------------------------------------------------------------------------------------
  // The REST subset

  private defineRoutes(): void {
    const R = "/repos/{owner}/{repo}";
    this.defineCommentRoutes(R);

    this.route("GET", `${R}/pulls`, async ({ query }) => {
      const state = query.get("state") ?? "open";
      const base = query.get("base");
      const head = query.get("head");
      const perPage = Math.min(100, Number(query.get("per_page") ?? 30) || 30);
      const page = Math.max(1, Number(query.get("page") ?? 1) || 1);
      const direction = query.get("direction") ?? "desc";
      let list = [...this.pulls.values()].filter((p) => (state === "all" ? true : p.state === state));
      if (base) list = list.filter((p) => p.baseRef === base);
      if (head) list = list.filter((p) => `${this.owner}:${p.headRef}` === head);
      list.sort((a, b) => (a.createdAt === b.createdAt ? a.number - b.number : a.createdAt < b.createdAt ? -1 : 1));
      if (direction === "desc") list.reverse();
      const pageItems = list.slice((page - 1) * perPage, page * perPage);
      return { status: 200, body: await Promise.all(pageItems.map((p) => this.pullJson(p, false))) };
    });

    this.route("POST", `${R}/pulls`, async ({ body }) => {
      const b = (body ?? {}) as Record<string, unknown>;
      const head = typeof b.head === "string" ? b.head.replace(new RegExp(`^${this.owner}:`), "") : "";
      const base = typeof b.base === "string" ? b.base : "";
      if (typeof b.title !== "string" || !b.title) throw new HttpError(422, "Validation Failed", { errors: [{ resource: "PullRequest", field: "title", code: "missing_field" }] });
      if (!(await this.git.branchHead(head))) throw new HttpError(422, "Validation Failed", { errors: [{ resource: "PullRequest", field: "head", code: "invalid" }] });
      if (!(await this.git.branchHead(base))) throw new HttpError(422, "Validation Failed", { errors: [{ resource: "PullRequest", field: "base", code: "invalid" }] });
      const dup = [...this.pulls.values()].find((p) => p.state === "open" && p.headRef === head && p.baseRef === base);
      if (dup) throw new HttpError(422, "Validation Failed", { errors: [{ resource: "PullRequest", code: "custom", message: `A pull request already exists for ${this.owner}:${head}.` }] });
      const n = await this.openPullRequest({ head, base, title: b.title, body: typeof b.body === "string" ? b.body : undefined, author: "lockstep" });
      return { status: 201, body: await this.pullJson(this.pulls.get(n)!, true) };
    });

    this.route("GET", `${R}/pulls/{pull_number}`, async ({ params }) => {
      const pr = this.mustPull(Number(params.pull_number));
      return { status: 200, body: await this.pullJson(pr, true, true) };
    });

    this.route("GET", `${R}/pulls/{pull_number}/files`, async ({ params }) => {
      const pr = this.mustPull(Number(params.pull_number));
      const head = await this.headSha(pr);
      const base = pr.merged && pr.mergeCommitSha ? ((await this.git.commitInfo(pr.mergeCommitSha))?.parents[0] ?? head) : ((await this.git.branchHead(pr.baseRef)) ?? head);
      const files = await this.git.changedFiles(base, head);
      return { status: 200, body: files.map((f) => this.diffEntryJson(f, head)) };
    });

    this.route("PUT", `${R}/pulls/{pull_number}/merge`, ({ params, body }) =>
      this.serialWrite(async () => {
        const pr = this.mustPull(Number(params.pull_number));
        const b = (body ?? {}) as Record<string, unknown>;
        const method = (b.merge_method ?? "merge") as string;
        if (!["merge", "squash", "rebase"].includes(method)) throw new HttpError(422, "Validation Failed", { errors: [{ resource: "PullRequest", field: "merge_method", code: "invalid" }] });
        if (b.sha !== undefined && (typeof b.sha !== "string" || !/^[0-9a-f]{40}$/.test(b.sha))) throw new HttpError(422, "Validation Failed", { errors: [{ resource: "PullRequest", field: "sha", code: "invalid" }] });
        if (pr.state !== "open") throw new HttpError(405, "Pull Request is not mergeable");
        const head = await this.headSha(pr);
        if (typeof b.sha === "string" && b.sha !== head) throw new HttpError(409, "Head branch was modified. Review and try the merge again.");
        const { mergeable } = await this.mergeableOf(pr, false);
        if (mergeable === false) throw new HttpError(405, "Pull Request is not mergeable");
        const title = typeof b.commit_title === "string" ? b.commit_title : method === "squash" ? `${pr.title} (#${pr.number})` : `Merge pull request #${pr.number} from ${this.owner}/${pr.headRef}`;
        const message = typeof b.commit_message === "string" ? b.commit_message : method === "squash" ? "" : pr.title;
        let sha: string;
        try {
          sha = await this.git.mergeInto(pr.baseRef, head, method as "merge" | "squash" | "rebase", title, message);
        } catch (e) {
          if (e instanceof MergeConflict) throw new HttpError(405, "Pull Request is not mergeable");
          throw e;
        }
        pr.frozenHeadSha = head;
        pr.state = "closed";
        pr.merged = true;
        pr.mergedAt = pr.closedAt = pr.updatedAt = now();
        pr.mergeCommitSha = sha;
        void this.deliver("pull_request", { action: "closed", number: pr.number, pull_request: await this.pullJson(pr, false) });
        void this.deliver("push", { ref: `refs/heads/${pr.baseRef}`, after: sha });
        return { status: 200, body: { sha, merged: true, message: "Pull Request successfully merged" } };
      }),
    );

    this.route(
      "GET",
      `${R}/contents/{path}`,
      async ({ params, query }) => {
        const ref = query.get("ref");
        const sha = await this.resolveRefParam(ref);
        const file = await this.git.readFile(sha, params.path!);
        if (!file) throw new HttpError(404, "Not Found");
        return { status: 200, body: this.fileJson(params.path!, ref ?? this.defaultBranch, file.blobSha, file.bytes) };
      },
      true,
    );

    this.route(
      "PUT",
      `${R}/contents/{path}`,
      ({ params, body }) =>
        this.serialWrite(async () => {
          const b = (body ?? {}) as Record<string, unknown>;
          const path = params.path!;
          if (typeof b.message !== "string" || typeof b.content !== "string") throw new HttpError(422, "Invalid request.\n\n\"message\" and \"content\" are required.");
          const branch = typeof b.branch === "string" ? b.branch : this.defaultBranch;
          const parent = await this.git.branchHead(branch);
          if (!parent) throw new HttpError(404, `Branch ${branch} not found`);
          const existing = await this.git.readFile(parent, path);
          if (existing && b.sha === undefined) throw new HttpError(422, "Invalid request.\n\n\"sha\" wasn't supplied.");
          if (existing && b.sha !== existing.blobSha) throw new HttpError(409, `${path} does not match ${String(b.sha)}`);
          const bytes = Buffer.from(b.content, "base64");
          const committer = b.committer as { name?: string; email?: string } | undefined;
          const author = committer?.name && committer.email ? { name: committer.name, email: committer.email } : undefined;
          const { commit, blobSha } = await this.git.commitFile(branch, parent, path, bytes, b.message, author);
          void this.deliver("push", { ref: `refs/heads/${branch}`, after: commit });
          const content = this.fileJson(path, branch, blobSha, null);
          return { status: existing ? 200 : 201, body: { content, commit: await this.gitCommitJson(commit) } };
        }),
      true,
    );

    this.route("GET", `${R}/commits/{ref}/status`, async ({ params }) => {
      const sha = await this.resolveRefParam(params.ref!);
      const list = [...(this.statuses.get(sha)?.values() ?? [])];
      return {
        status: 200,
        body: {
          state: this.combinedState(sha),
          statuses: list.map((s) => ({
            url: this.api(`/statuses/${sha}`),
            avatar_url: null,
            id: s.id,
            node_id: `SC_${s.id}`,
            state: s.state,
            description: s.description,
            target_url: s.targetUrl,
            context: s.context,
            created_at: s.createdAt,
            updated_at: s.updatedAt,
          })),
          sha,
          total_count: list.length,
          repository: this.minimalRepoJson(),
          commit_url: this.api(`/commits/${sha}`),
          url: this.api(`/commits/${sha}/status`),
        },
      };
    });

    this.route("GET", `${R}/commits/{ref}/check-runs`, async ({ params, query }) => {
      const sha = await this.resolveRefParam(params.ref!);
      const all = this.checkRuns.get(sha) ?? [];
      // Paginated like GitHub: per_page (default 30, at most 100) and page; total_count counts all.
      const perPage = Math.min(100, Number(query.get("per_page") ?? 30) || 30);
      const page = Math.max(1, Number(query.get("page") ?? 1) || 1);
      const runs = all.slice((page - 1) * perPage, page * perPage);
      return {
        status: 200,
        body: {
          total_count: all.length,
          check_runs: runs.map((r) => ({
            id: r.id,
            head_sha: r.sha,
            node_id: `CR_${r.id}`,
            external_id: String(r.id),
            url: `${this.url}/repos/${this.fullName}/check-runs/${r.id}`,
            html_url: this.html(`/runs/${r.id}`),
            details_url: this.html(`/actions/runs/${r.id}`),
            status: r.status,
            conclusion: r.conclusion,
            started_at: r.startedAt,
            completed_at: r.completedAt,
            output: { title: null, summary: null, text: null, annotations_count: 0, annotations_url: `${this.url}/repos/${this.fullName}/check-runs/${r.id}/annotations` },
            name: r.name,
            check_suite: { id: r.id + 1 },
            app: null,
            pull_requests: [],
          })),
        },
      };
    });

    this.route(
      "GET",
      `${R}/git/ref/{ref}`,
      async ({ params }) => {
        const m = /^heads\/(.+)$/.exec(params.ref!);
        const sha = m ? await this.git.branchHead(m[1]!) : null;
        if (!m || !sha) throw new HttpError(404, "Not Found");
        return { status: 200, body: this.refJson(m[1]!, sha) };
      },
      true,
    );

    this.route("POST", `${R}/git/refs`, ({ body }) =>
      this.serialWrite(async () => {
        const b = (body ?? {}) as Record<string, unknown>;
        const m = typeof b.ref === "string" ? /^refs\/heads\/([A-Za-z0-9._\/-]+)$/.exec(b.ref) : null;
        if (!m || typeof b.sha !== "string") throw new HttpError(422, "Reference name must start with 'refs/' and have at least two slashes.");
        if (!(await this.git.resolveCommit(b.sha))) throw new HttpError(422, "Object does not exist");
        if (await this.git.branchHead(m[1]!)) throw new HttpError(422, "Reference already exists");
        await this.git.updateBranch(m[1]!, b.sha, null);
        return { status: 201, body: this.refJson(m[1]!, b.sha) };
      }),
    );

    this.route("GET", `${R}/git/commits/{commit_sha}`, async ({ params }) => {
      if (!/^[0-9a-f]{40}$/.test(params.commit_sha!)) throw new HttpError(404, "Not Found");
      return { status: 200, body: await this.gitCommitJson(params.commit_sha!) };
    });
  }
}

async function readBody(req: IncomingMessage, limit = 10 * 1024 * 1024): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req) {
    size += (chunk as Buffer).length;
    if (size > limit) throw new HttpError(413, "Payload too large");
    chunks.push(chunk as Buffer);
  }
  return Buffer.concat(chunks);
}

/** Start a local GitHub for a bare repo. `url` is the API base URL to give GitHubClient. */
export async function startLocalGitHub(opts: LocalGitHubOptions): Promise<LocalGitHub> {
  const gh = new LocalGitHub(opts);
  await gh.listen(opts.port ?? 0, opts.host ?? "127.0.0.1");
  return gh;
}

/** The demo's entry point: start({ repo, owner, name, port? }) -> { url, stop() } (and all helpers). */
export const start = startLocalGitHub;

/**
 * Command line (for a demo in another process):
 *   node dist/test/github/server.js --repo PATH/origin.git --owner acme --name fleet [--port N]
 *     [--token T] [--webhook URL --webhook-secret S]
 * Prints {"url": ...} on one line and runs until SIGINT/SIGTERM.
 */
async function main(argv: string[]): Promise<void> {
  const arg = (name: string) => {
    const i = argv.indexOf(`--${name}`);
    return i >= 0 ? argv[i + 1] : undefined;
  };
  const repo = arg("repo");
  if (!repo) throw new Error("usage: server.js --repo PATH/origin.git [--owner acme] [--name fleet] [--port N] [--token T] [--webhook URL --webhook-secret S]");
  const gh = await startLocalGitHub({
    repo,
    owner: arg("owner") ?? "acme",
    name: arg("name") ?? "fleet",
    port: Number(arg("port") ?? 0),
    ...(arg("token") ? { token: arg("token") } : {}),
  });
  const hook = arg("webhook");
  if (hook) gh.addWebhook(hook, arg("webhook-secret") ?? "");
  console.log(JSON.stringify({ url: gh.url }));
  const stop = () => void gh.stop().then(() => process.exit(0));
  process.on("SIGINT", stop);
  process.on("SIGTERM", stop);
}

if (require.main === module) {
  main(process.argv.slice(2)).catch((e: unknown) => {
    console.error((e as Error).message);
    process.exitCode = 1;
  });
}

/**
 * One GitHub test setup: a real test fleet repo (bare origin), the local GitHub server on it with
 * every response checked against GitHub's OpenAPI description, and a GitHubClient with fast
 * backoffs. Tests call `stop()` in afterAll and assert `violations()` is empty.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { FleetRepo, type LockUpdate } from "../fleet/repo.js";
import { OpenApiChecker } from "./openapi.js";
import { startLocalGitHub, type LocalGitHub } from "./server.js";
import { GitHubClient, type GitHubClientOptions } from "../../github/client.js";
import { createGitHubLogger, loadGitHubConfig, type GitHubConfig, type GitHubConfigInput } from "../../github/config.js";

export const TEST_TOKEN = "ghp_LockstepTestToken0123456789abcdefXYZ";

/** Collects every log line a logger writes (for asserting what is, and is not, logged). */
export class LogCapture extends Writable {
  readonly lines: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: () => void): void {
    this.lines.push(...chunk.toString("utf8").split("\n").filter(Boolean));
    cb();
  }
}

export interface GitHubHarness {
  root: string;
  fleet: FleetRepo;
  server: LocalGitHub;
  config: GitHubConfig;
  client: GitHubClient;
  logs: LogCapture;
  /** Make another client (e.g. with other options) against the same server. */
  newClient(opts?: GitHubClientOptions, config?: Partial<GitHubConfigInput>): GitHubClient;
  configWith(overrides: Partial<GitHubConfigInput>): GitHubConfig;
  /**
   * Open a lock-update PR the way an updater does: bump the `bump` inputs (default nixpkgs; each
   * call a day after the last, from 2026-11-11), `nix flake update` (or only `inputs`) on
   * `branch`, and a PR with the update-flake-lock action's title, labels and body unless given.
   */
  newLockUpdate(opts?: NewLockUpdate): Promise<{ upd: LockUpdate; n: number }>;
  /** OpenAPI violations since the last call (drains them). */
  violations(): string[];
  stop(): Promise<void>;
}

export interface NewLockUpdate {
  branch?: string;
  bump?: string[];
  inputs?: string[];
  title?: string;
  labels?: string[];
  createdAt?: Date;
}

export const FAST_CLIENT: GitHubClientOptions = { retryBaseMs: 5, rateLimitBaseMs: 20, writeSpacingMs: 0 };

export async function startGitHubHarness(opts: { hosts?: string[]; config?: Partial<GitHubConfigInput>; client?: GitHubClientOptions } = {}): Promise<GitHubHarness> {
  const root = mkdtempSync(join(tmpdir(), "lockstep-github-"));
  const fleet = FleetRepo.create({ root, hosts: opts.hosts ?? ["alpha"], initialDate: new Date("2026-11-01T12:00:00Z") });
  const checker = OpenApiChecker.shared();
  const server = await startLocalGitHub({ repo: fleet, owner: "acme", name: "fleet", token: TEST_TOKEN, validate: (r) => checker.check(r), validateRequest: (r) => checker.checkRequest(r.method, r.pathTemplate, r.body) });
  const logs = new LogCapture();
  const logger = createGitHubLogger({ level: "trace", destination: logs });
  const configWith = (overrides: Partial<GitHubConfigInput>): GitHubConfig =>
    loadGitHubConfig({ owner: "acme", repo: "fleet", token: TEST_TOKEN, apiBaseUrl: server.url, mergeableRetryDelayMs: 10, ...opts.config, ...overrides });
  const config = configWith({});
  const newClient = (o: GitHubClientOptions = {}, c: Partial<GitHubConfigInput> = {}) => new GitHubClient(configWith(c), { logger, ...FAST_CLIENT, ...opts.client, ...o });
  const client = newClient();
  let date = Date.parse("2026-11-10T12:00:00Z");
  const newLockUpdate = async (o: NewLockUpdate = {}) => {
    for (const input of o.bump ?? ["nixpkgs"]) {
      date += 86_400_000;
      fleet.bumpInput(input, new Date(date));
    }
    const upd = fleet.lockUpdateBranch(o.branch ?? "update_flake_lock_action", o.inputs);
    const n = await server.openPullRequest({
      head: upd.branch,
      title: o.title ?? "flake.lock: Update",
      labels: o.labels ?? ["automated", "dependencies"],
      body: upd.prBody,
      ...(o.createdAt ? { createdAt: o.createdAt } : {}),
    });
    return { upd, n };
  };
  return {
    root,
    fleet,
    server,
    config,
    client,
    logs,
    newClient,
    configWith,
    newLockUpdate,
    violations: () => server.contractViolations.splice(0),
    async stop() {
      await server.stop();
      rmSync(root, { recursive: true, force: true });
    },
  };
}

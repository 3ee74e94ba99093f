/**
 * GitHub benchmark against the local GitHub server on a real test fleet repo with one open
 * lock-update PR: what a poll of an unchanged repository costs (requests, rate-limited requests,
 * latency) with the ETag cache, against the same poll without it; and how long GitHub's OpenAPI
 * description takes to load and to compile a validator.
 *
 *   node dist/test/bench/github.js      prints the figures as JSON
 *
 * Fixed number of polls, then everything is stopped and removed, so it stops by itself.
 */
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { FleetRepo } from "../fleet/repo.js";
import { startLocalGitHub } from "../github/server.js";
import { OpenApiChecker } from "../github/openapi.js";
import { GitHubClient } from "../../github/client.js";
import { createGitHubLogger, loadGitHubConfig } from "../../github/config.js";
import { UpdateWatcher } from "../../github/poller.js";

const POLLS = 20;
const round = (n: number, digits = 1) => Number(n.toFixed(digits));

function median(xs: number[]): number {
  const s = [...xs].sort((a, b) => a - b);
  return s[Math.floor(s.length / 2)] ?? 0;
}

export async function benchGithub(): Promise<Record<string, number>> {
  const figures: Record<string, number> = {};

  // OpenAPI description: load (once per process) and the first compile of a large schema.
  const checker = OpenApiChecker.shared();
  figures.openapiSpecLoadMs = round(checker.loadMs);
  const compileStart = performance.now();
  checker.check({ method: "GET", pathTemplate: "/repos/{owner}/{repo}/pulls/{pull_number}", status: 200, body: {} });
  figures.openapiPullRequestCompileMs = round(performance.now() - compileStart);

  const root = mkdtempSync(join(tmpdir(), "lockstep-bench-github-"));
  const fleet = FleetRepo.create({ root, hosts: ["alpha"], initialDate: new Date("2026-11-01T12:00:00Z") });
  const server = await startLocalGitHub({ repo: fleet, owner: "acme", name: "fleet", token: "bench-token" });
  const silent = createGitHubLogger({ level: "warn", destination: new Writable({ write: (_c, _e, cb) => cb() }) });
  try {
    fleet.bumpInput("nixpkgs", new Date("2026-11-08T12:00:00Z"));
    const upd = fleet.lockUpdateBranch();
    await server.openPullRequest({ head: upd.branch, title: "flake.lock: Update", labels: ["automated", "dependencies"], body: upd.prBody });
    server.setStatus(upd.sha, "success", "ci/build");
    server.addCheckRun(upd.sha, { name: "nix flake check", conclusion: "success" });
    const config = loadGitHubConfig({ owner: "acme", repo: "fleet", token: "bench-token", apiBaseUrl: server.url });

    const measure = async (client: GitHubClient) => {
      const watcher = new UpdateWatcher(client, config, { logger: silent });
      server.resetStats();
      let t = performance.now();
      await watcher.checkNow();
      const firstMs = performance.now() - t;
      const afterFirst = server.stats();
      const times: number[] = [];
      for (let i = 1; i < POLLS; i++) {
        t = performance.now();
        await watcher.checkNow();
        times.push(performance.now() - t);
      }
      await watcher.stop();
      const total = server.stats();
      return { firstMs, afterFirst, total, medianMs: median(times) };
    };

    const cached = await measure(new GitHubClient(config, { logger: silent, writeSpacingMs: 0 }));
    figures.polls = POLLS;
    figures.requestsPerPoll = round(cached.total.requests / POLLS, 2);
    figures.firstPollRateLimitedRequests = cached.afterFirst.rateLimited;
    figures.rateLimitedRequestsForAllPolls = cached.total.rateLimited;
    figures.rateLimitedRequestsPerUnchangedPoll = round((cached.total.rateLimited - cached.afterFirst.rateLimited) / (POLLS - 1), 2);
    figures.firstPollMs = round(cached.firstMs);
    figures.unchangedPollMedianMs = round(cached.medianMs);

    // The same polls with a fresh client each time (no ETag cache): what polling would cost.
    server.resetStats();
    const uncachedTimes: number[] = [];
    for (let i = 0; i < POLLS; i++) {
      const watcher = new UpdateWatcher(new GitHubClient(config, { logger: silent, writeSpacingMs: 0 }), config, { logger: silent });
      const t = performance.now();
      await watcher.checkNow();
      uncachedTimes.push(performance.now() - t);
      await watcher.stop();
    }
    figures.rateLimitedRequestsWithoutEtags = server.stats().rateLimited;
    figures.pollWithoutEtagsMedianMs = round(median(uncachedTimes));
    // Steady state: a poll per minute for an hour, per the measured per-poll costs above.
    figures.hourlyRateLimitCostAt60sPollingWithEtags = round(figures.rateLimitedRequestsPerUnchangedPoll * 60);
    figures.hourlyRateLimitCostAt60sPollingWithoutEtags = round((server.stats().rateLimited / POLLS) * 60);
    return figures;
  } finally {
    await server.stop();
    rmSync(root, { recursive: true, force: true });
  }
}

if (require.main === module) {
  benchGithub().then(
    (figures) => console.log(JSON.stringify(figures, null, 2)),
    (err: unknown) => {
      console.error(err);
      process.exitCode = 1;
    },
  );
}

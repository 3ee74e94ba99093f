import { describe, it, expect } from "vitest";
import { OpenApiChecker } from "../github/openapi.js";

describe("OpenAPI checker (GitHub's published description)", () => {
  const checker = OpenApiChecker.shared();
  const ref = { ref: "refs/heads/main", node_id: "x", url: "https://api.github.com/repos/a/b/git/refs/heads/main", object: { type: "commit", sha: "a".repeat(40), url: "https://api.github.com/x" } };
  it("accepts a valid response and rejects a drifted one", () => {
    expect(checker.check({ method: "GET", pathTemplate: "/repos/{owner}/{repo}/git/ref/{ref}", status: 200, body: ref })).toEqual([]);
    const { object: _o, ...missing } = ref;
    const problems = checker.check({ method: "GET", pathTemplate: "/repos/{owner}/{repo}/git/ref/{ref}", status: 200, body: missing });
    expect(problems.join("\n")).toMatch(/must have required property 'object'/);
    expect(checker.check({ method: "PUT", pathTemplate: "/repos/{owner}/{repo}/pulls/{pull_number}/merge", status: 200, body: { sha: "a".repeat(40), merged: "yes", message: "ok" } }).join()).toMatch(/merged must be boolean/);
  });
  it("knows which operations and statuses exist", () => {
    expect(checker.check({ method: "GET", pathTemplate: "/repos/{owner}/{repo}/not-a-thing", status: 200, body: {} })[0]).toMatch(/operation not in GitHub's OpenAPI description/);
    expect(checker.check({ method: "GET", pathTemplate: "/repos/{owner}/{repo}/git/ref/{ref}", status: 418, body: {} })[0]).toMatch(/status not declared/);
    expect(checker.check({ method: "GET", pathTemplate: "/repos/{owner}/{repo}/pulls", status: 304, body: undefined })).toEqual([]);
  });
  it("treats OpenAPI nullable enums as allowing null", () => {
    const u = "https://api.github.com/repos/a/b/check-runs/1";
    const run = (conclusion: unknown) => ({
      total_count: 1,
      check_runs: [
        {
          id: 1, node_id: "CR_1", head_sha: "a".repeat(40), external_id: "1", url: u, html_url: u, details_url: u, name: "build",
          status: "in_progress", conclusion, started_at: "2026-11-20T00:00:00Z", completed_at: null,
          output: { title: null, summary: null, text: null, annotations_count: 0, annotations_url: `${u}/annotations` },
          check_suite: { id: 2 }, app: null, pull_requests: [],
        },
      ],
    });
    const check = (conclusion: unknown) => checker.check({ method: "GET", pathTemplate: "/repos/{owner}/{repo}/commits/{ref}/check-runs", status: 200, body: run(conclusion) });
    expect(check(null)).toEqual([]);
    expect(check("success")).toEqual([]);
    expect(check("exploded").join()).toMatch(/conclusion must be equal to one of the allowed values/);
  });
});

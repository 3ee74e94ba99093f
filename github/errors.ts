/**
 * Typed GitHub errors. Each says what happened in words and, in `hint`, what to do about it.
 * `status` is the HTTP status (undefined for network failures and invalid responses).
 */
import { LockstepError } from "../protocol/errors.js";

export type GitHubErrorCode =
  | "github-unauthorized"
  | "github-forbidden"
  | "github-rate-limited"
  | "github-not-found"
  | "github-not-mergeable"
  | "github-conflict"
  | "github-unprocessable"
  | "github-server-error"
  | "github-network"
  | "github-invalid-response"
  | "github-unexpected-status";

export class GitHubError extends LockstepError {
  override name = "GitHubError";
  constructor(
    message: string,
    override readonly code: GitHubErrorCode,
    readonly status: number | undefined,
    /** "GET /repos/{owner}/{repo}/pulls": which call failed. */
    readonly route: string,
    hint?: string,
    options?: { cause?: unknown },
  ) {
    super(message, code, hint, options);
  }
}

/** Map an HTTP failure to a typed error with advice. `githubMessage` is GitHub's own text. */
export function gitHubErrorFor(status: number | undefined, route: string, githubMessage: string | undefined, cause?: unknown): GitHubError {
  const said = githubMessage ? `: ${githubMessage}` : "";
  const at = `GitHub ${route}`;
  switch (true) {
    case status === undefined:
      return new GitHubError(`${at} could not be reached${said}`, "github-network", status, route, "check apiBaseUrl and the network; polling will retry", { cause });
    case status === 401:
      return new GitHubError(`${at} refused the token (401)${said}`, "github-unauthorized", status, route, "the token is missing, expired or revoked: create a new one and update tokenFile / LOCKSTEP_GITHUB_TOKEN", { cause });
    case status === 403 && /rate limit/i.test(githubMessage ?? ""):
      return new GitHubError(`${at} rate limit exceeded (403)${said}`, "github-rate-limited", status, route, "wait for x-ratelimit-reset, poll less often, or configure a webhook", { cause });
    case status === 429:
      return new GitHubError(`${at} too many requests (429)${said}`, "github-rate-limited", status, route, "wait for retry-after, poll less often, or configure a webhook", { cause });
    case status === 403:
      return new GitHubError(`${at} is forbidden (403)${said}`, "github-forbidden", status, route, "the token lacks a permission: it needs contents, pull requests and checks/statuses access to this repository (see docs/github.md)", { cause });
    case status === 404:
      return new GitHubError(`${at} not found (404)${said}`, "github-not-found", status, route, "check owner, repo, branch and that the token can see this repository (private repos answer 404 without access)", { cause });
    case status === 405:
      return new GitHubError(`${at} not allowed (405)${said}`, "github-not-mergeable", status, route, "the pull request is not mergeable: it has conflicts, failing required checks or missing reviews", { cause });
    case status === 409:
      return new GitHubError(`${at} conflict (409)${said}`, "github-conflict", status, route, "something changed in the meantime (head moved or the file changed): check again, then retry", { cause });
    case status === 422:
      return new GitHubError(`${at} rejected the request (422)${said}`, "github-unprocessable", status, route, "GitHub validated the request and refused it: read its message (a required check failing, a branch that already exists, an invalid parameter)", { cause });
    case status !== undefined && status >= 500:
      return new GitHubError(`${at} failed on GitHub's side (${status})${said}`, "github-server-error", status, route, "GitHub is having trouble: retried with backoff already, try again later", { cause });
    default:
      return new GitHubError(`${at} answered ${status}${said}`, "github-unexpected-status", status, route, undefined, { cause });
  }
}

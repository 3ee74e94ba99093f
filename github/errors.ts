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
  | "github-timeout"
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
    options?: { cause?: unknown; githubMessage?: string },
  ) {
    super(message, code, hint, options);
    this.githubMessage = options?.githubMessage;
  }
  /** GitHub's own "message" from the error body, when there was one. */
  readonly githubMessage: string | undefined;
}

/** How a failed call was sent: writes are never retried, reads `retried` times. */
export interface AttemptInfo {
  isWrite: boolean;
  retried: number;
}

/** What happened to a call that failed without a usable answer, said honestly. */
function retryNote(attempt: AttemptInfo | undefined): string {
  if (!attempt) return "try again later";
  if (attempt.isWrite) return "the write was not retried (it may have happened on GitHub's side): check the pull request, then try again";
  return attempt.retried > 0 ? `retried ${attempt.retried} time${attempt.retried === 1 ? "" : "s"} with backoff already, try again later` : "try again later";
}

/** A call that got no answer within `timeoutMs` per attempt (a read is retried, a write is not sent again). */
export function timeoutError(route: string, timeoutMs: number, isWrite: boolean, retried: number, cause?: unknown): GitHubError {
  const seconds = Math.round(timeoutMs / 100) / 10;
  const hint = `GitHub or the network is slow or stuck; ${retryNote({ isWrite, retried })}`;
  return new GitHubError(`GitHub ${route} did not answer within ${seconds} s`, "github-timeout", undefined, route, hint, { cause });
}

/** Map an HTTP failure to a typed error with advice. `githubMessage` is GitHub's own text. */
export function gitHubErrorFor(status: number | undefined, route: string, githubMessage: string | undefined, cause?: unknown, attempt?: AttemptInfo): GitHubError {
  const said = githubMessage ? `: ${githubMessage}` : "";
  const at = `GitHub ${route}`;
  const error = (message: string, code: GitHubErrorCode, hint?: string) => new GitHubError(message, code, status, route, hint, { cause, githubMessage });
  switch (true) {
    case status === undefined:
      return error(`${at} could not be reached${said}`, "github-network", attempt?.isWrite ? `check apiBaseUrl and the network; ${retryNote(attempt)}` : "check apiBaseUrl and the network; polling will retry");
    case status === 401:
      return error(`${at} refused the token (401)${said}`, "github-unauthorized", "the token is missing, expired or revoked: create a new one and update tokenFile / LOCKSTEP_GITHUB_TOKEN");
    case status === 403 && /rate limit/i.test(githubMessage ?? ""):
      return error(`${at} rate limit exceeded (403)${said}`, "github-rate-limited", "wait for x-ratelimit-reset, poll less often, or configure a webhook");
    case status === 429:
      return error(`${at} too many requests (429)${said}`, "github-rate-limited", "wait for retry-after, poll less often, or configure a webhook");
    case status === 403:
      return error(`${at} is forbidden (403)${said}`, "github-forbidden", "the token lacks a permission: it needs contents, pull requests and checks/statuses access to this repository (see docs/github.md)");
    case status === 404:
      return error(`${at} not found (404)${said}`, "github-not-found", "check owner, repo, branch and that the token can see this repository (private repos answer 404 without access)");
    case status === 405:
      return error(`${at} not allowed (405)${said}`, "github-not-mergeable", "the pull request is not mergeable: it has conflicts, failing required checks or missing reviews");
    case status === 409:
      return error(`${at} conflict (409)${said}`, "github-conflict", "something changed in the meantime (head moved or the file changed): check again, then retry");
    case status === 422:
      return error(`${at} rejected the request (422)${said}`, "github-unprocessable", "GitHub validated the request and refused it: read its message (a required check failing, a branch that already exists, an invalid parameter)");
    case status !== undefined && status >= 500:
      return error(`${at} failed on GitHub's side (${status})${said}`, "github-server-error", `GitHub is having trouble: ${retryNote(attempt)}`);
    default:
      return error(`${at} answered ${status}${said}`, "github-unexpected-status");
  }
}

/** A PR that Lockstep must not merge (closed, another base, no detection rule matches, more than flake.lock). */
export class NotAnUpdateError extends LockstepError {
  override name = "NotAnUpdateError";
  constructor(number: number, why: string) {
    super(`PR #${number} is not a lock-update PR Lockstep may merge: ${why}`, "not-an-update", "merge it by hand, or adjust the detection rules of the GitHub node");
  }
}

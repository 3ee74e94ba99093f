/**
 * HTTP status codes for the API's errors, by the error's `code` (every LockstepError has one;
 * Node-RED's Catch node passes it on as msg.error.code). One table, in TypeScript, for the API
 * flows and the hub's own routes.
 */

/** Exact codes first, then the families (prefix before the first "-" of a family). */
const BY_CODE: Record<string, number> = {
  message: 400,
  usage: 400,
  "rollout-spec": 400,
  "invalid-json": 400,
  "body-too-large": 413,
  "unsupported-media-type": 415,
  "rollout-not-found": 404,
  "not-found": 404,
  "rollout-conflict": 409,
  "rollout-step-not-running": 409,
  "merge-guard": 409,
  // The data dir cannot be written: nothing starts until it can (protocol/storage.ts).
  "storage-fault": 409,
  "not-an-update": 422,
  "rollout-plan": 422,
  config: 503,
  "fleet-not-connected": 503,
  timeout: 504,
};

const BY_PREFIX: Array<[prefix: string, status: number]> = [
  // MergeRefusedError: "merge-head-moved", "merge-not-mergeable", ...
  ["merge-", 409],
  // GitHubError: the upstream failed.
  ["github-", 502],
];

/** The HTTP status for an error code; 500 for anything not known to be the caller's or GitHub's fault. */
export function httpStatusForCode(code: unknown): number {
  if (typeof code !== "string") return 500;
  const exact = BY_CODE[code];
  if (exact !== undefined) return exact;
  return BY_PREFIX.find(([prefix]) => code.startsWith(prefix))?.[1] ?? 500;
}

/** The JSON body of an API error: the message without the "SomeError: " Node-RED puts in front. */
export function apiErrorBody(message: unknown, code?: unknown): { error: string; code?: string } {
  const text = typeof message === "string" && message ? message.replace(/^[A-Za-z]*Error: /, "") : "error";
  return { error: text, ...(typeof code === "string" ? { code } : {}) };
}

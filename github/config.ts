/**
 * GitHub configuration: which repository, how to find lock-update PRs, how to merge and revert.
 * Validated with zod; the token is read from a file, the config, or LOCKSTEP_GITHUB_TOKEN and held
 * in a Secret that prints as "[REDACTED]" so it cannot end up in a log line or a JSON dump.
 */
import { inspect } from "node:util";
import pino, { type Logger } from "pino";
import { z } from "zod";
import { ConfigError } from "../protocol/errors.js";
import { readSecretFile } from "../protocol/config-file.js";

/** A secret string that never serialises: String(), JSON and util.inspect show "[REDACTED]". */
export class Secret {
  readonly #value: string;
  constructor(value: string) {
    this.#value = value;
  }
  /** The real value, for the Authorization header only. */
  reveal(): string {
    return this.#value;
  }
  toString(): string {
    return "[REDACTED]";
  }
  toJSON(): string {
    return "[REDACTED]";
  }
  [inspect.custom](): string {
    return "[REDACTED]";
  }
}

export const MERGE_METHODS = ["merge", "squash", "rebase"] as const;
export type MergeMethod = (typeof MERGE_METHODS)[number];
export const REVERT_MODES = ["pr", "commit"] as const;
export type RevertMode = (typeof REVERT_MODES)[number];

/**
 * Which open PRs are lock updates. Defaults recognise update-flake-lock, Renovate's lock file
 * maintenance and nix digest updates, per-input updaters (update-flake-inputs: one PR per input)
 * and Lockstep's own workflows; docs/github.md lists real titles and branches for each.
 */
export const DetectionRules = z
  .object({
    /** A PR carrying ALL of these labels matches. Empty = the label rule is off. */
    labels: z.array(z.string().min(1)).default(["automated", "dependencies"]),
    /**
     * Case-insensitive substrings of the title. "update" and "bump" are broad on purpose: with
     * `onlyFlakeLock` a match counts only when the PR changes flake.lock alone.
     */
    titlePatterns: z.array(z.string().min(1)).default(["flake.lock", "flake input", "lock file maintenance", "update", "bump"]),
    /** Head branch names; `*` matches any characters. */
    headBranchPatterns: z.array(z.string().min(1)).default(["update_flake_lock_action", "update-nixfleet-*", "renovate/lock-file-maintenance", "renovate/*-digest", "flake-update*", "update-flake-*"]),
    /** Head branches never taken for an update: Lockstep's own revert PRs change only flake.lock too. */
    excludeHeadBranchPatterns: z.array(z.string().min(1)).default(["lockstep/revert-*"]),
    /**
     * PRs made with GitHub's Revert button (title `Revert "…"`, branch `revert-<n>-…`, body
     * "Reverts owner/repo#n") change only flake.lock when they revert an update: never an update.
     */
    ignoreReverts: z.boolean().default(true),
    /** Only PRs whose changed files are exactly flake.lock count (checked with the PR files API). */
    onlyFlakeLock: z.boolean().default(true),
    /** Open PRs that change different inputs are one pending update (merged together, in order). */
    groupDisjointPrs: z.boolean().default(true),
  })
  .strict();
export type DetectionRules = z.infer<typeof DetectionRules>;

const ownerOrRepo = z.string().regex(/^[A-Za-z0-9_.-]{1,100}$/, "letters, digits, '.', '_' and '-' only");

export const GitHubConfigInput = z
  .object({
    owner: ownerOrRepo,
    repo: ownerOrRepo,
    baseBranch: z.string().min(1).max(200).default("main"),
    /** The flake lock file path in the repo. */
    lockPath: z.string().min(1).default("flake.lock"),
    /** Inline token (e.g. from Node-RED credentials). Prefer tokenFile. */
    token: z.string().min(1).optional(),
    tokenFile: z.string().min(1).optional(),
    /** https://api.github.com, or https://HOST/api/v3 for GitHub Enterprise Server. */
    apiBaseUrl: z.string().url().default("https://api.github.com"),
    webhookSecret: z.string().min(1).optional(),
    webhookSecretFile: z.string().min(1).optional(),
    detection: DetectionRules.default(DetectionRules.parse({})),
    mergeMethod: z.enum(MERGE_METHODS).default("merge"),
    revertMode: z.enum(REVERT_MODES).default("pr"),
    pollIntervalMs: z.number().int().min(1000).default(60_000),
    /** How often to re-ask while GitHub answers mergeable: null ("computing"). */
    mergeableRetries: z.number().int().min(0).max(20).default(4),
    mergeableRetryDelayMs: z.number().int().min(0).default(1500),
    userAgent: z.string().default("lockstep-github"),
  })
  .strict();
export type GitHubConfigInput = z.input<typeof GitHubConfigInput>;

export interface GitHubConfig extends Omit<z.infer<typeof GitHubConfigInput>, "token" | "tokenFile" | "webhookSecret" | "webhookSecretFile"> {
  token: Secret;
  webhookSecret?: Secret;
}

/**
 * Validate a config and resolve its secrets. Token order: `token`, `tokenFile`, then the env var
 * LOCKSTEP_GITHUB_TOKEN. Throws ConfigError naming the bad field.
 */
export function loadGitHubConfig(input: unknown, env: NodeJS.ProcessEnv = process.env): GitHubConfig {
  const parsed = GitHubConfigInput.safeParse(input);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new ConfigError(`GitHub config: ${issue.path.join(".") || "(top)"}: ${issue.message}`, "fix the GitHub settings (see docs/github.md)");
  }
  const { token, tokenFile, webhookSecret, webhookSecretFile, ...rest } = parsed.data;
  const tokenValue = token ?? (tokenFile ? readSecretFile(tokenFile, "GitHub token") : undefined) ?? env.LOCKSTEP_GITHUB_TOKEN;
  if (!tokenValue) {
    throw new ConfigError("GitHub config: no token", "set tokenFile, or the environment variable LOCKSTEP_GITHUB_TOKEN, to a token with contents + pull-requests access");
  }
  const secretValue = webhookSecret ?? (webhookSecretFile ? readSecretFile(webhookSecretFile, "webhook secret") : undefined) ?? env.LOCKSTEP_GITHUB_WEBHOOK_SECRET;
  return {
    ...rest,
    apiBaseUrl: rest.apiBaseUrl.replace(/\/+$/, ""),
    token: new Secret(tokenValue),
    ...(secretValue ? { webhookSecret: new Secret(secretValue) } : {}),
  };
}

/** Paths pino blanks out, in case a secret ever reaches a log call as a plain string. */
export const REDACT_PATHS = [
  "token",
  "*.token",
  "config.token",
  "authorization",
  "headers.authorization",
  "*.headers.authorization",
  "request.headers.authorization",
  "*.request.headers.authorization",
  "err.request.headers.authorization",
  "webhookSecret",
  "*.webhookSecret",
  "secret",
  "*.secret",
];

/** The logger GitHub modules use by default: pino with the redaction above. */
export function createGitHubLogger(opts: { level?: string; destination?: pino.DestinationStream; name?: string } = {}): Logger {
  const options = { name: opts.name ?? "github", level: opts.level ?? process.env.LOCKSTEP_LOG_LEVEL ?? "info", redact: { paths: REDACT_PATHS, censor: "[REDACTED]" } };
  return opts.destination ? pino(options, opts.destination) : pino(options);
}

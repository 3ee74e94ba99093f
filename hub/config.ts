/**
 * The hub's configuration: one JSON file (`lockstep hub --config F`), then LOCKSTEP_* environment
 * variables on top, validated with zod. The broker part (`"broker": {...}`, data dir, listeners,
 * external broker) is the broker's own schema and loader; this file adds what only the hub has:
 * the HTTP server, GitHub, notifications, the weekly automation, Home Assistant and the bridge
 * to an upstream broker.
 *
 * Example:
 *   { "dataDir": "/var/lib/lockstep",
 *     "http": { "port": 1880 },
 *     "github": { "owner": "me", "repo": "fleet", "tokenFile": "/run/secrets/gh-token" },
 *     "notify": { "appriseUrl": "http://apprise:8000/notify/fleet" },
 *     "broker": { "listeners": { "tcp": { "port": 1883 } } } }
 */
import { z } from "zod";
import { ConfigError, DEFAULT_HA_USER, formatZodError, PREVIEW_MERGE_POLICIES, USER_NAME_PATTERN } from "../protocol/index.js";
import { ENV_OVERRIDES, parseBrokerConfig, type BrokerConfig } from "../broker/config.js";
import { envValue, setPath, type EnvKind } from "../broker/env-overrides.js";
import { readConfigFile } from "../protocol/config-file.js";
import { checkTimeZone } from "../protocol/windows.js";
import { RolloutSpec } from "../rollout/spec.js";
import cron from "node-cron";

/** pino's levels, as the hub's config and LOCKSTEP_LOG_LEVEL take them. */
export const LogLevel = z.enum(["fatal", "error", "warn", "info", "debug", "trace"]);

const port = z.number().int().min(0).max(65535);
const minutes = z.number().min(0).max(60 * 24 * 30);

/**
 * The GitHub section is github/config.ts's GitHubConfigInput (owner, repo, baseBranch, apiBaseUrl,
 * tokenFile, webhookSecretFile, detection, mergeMethod, revertMode, ...): checked with
 * loadGitHubConfig at startup and handed to Node-RED's lockstep-github config node as defaults.
 */
export const GitHubSettings = z.record(z.string(), z.unknown());
export type GitHubSettings = z.infer<typeof GitHubSettings>;

/** A cron expression node-cron (the schedule node) accepts: a bad one would start a weekly flow that never fires. */
const CronExpression = z.string().superRefine((expression, ctx) => {
  const detail = cron.validateDetailed(expression);
  if (!detail.valid) ctx.addIssue({ code: "custom", message: `"${expression}" is not a cron expression (${detail.errors.map((e) => `${e.field}: ${e.message}`).join("; ")})` });
});

/** An IANA time zone this platform knows. */
const TimeZone = z.string().superRefine((timeZone, ctx) => {
  try {
    checkTimeZone(timeZone);
  } catch {
    ctx.addIssue({ code: "custom", message: `"${timeZone}" is not a time zone (expected an IANA name such as "Europe/Berlin" or "UTC")` });
  }
});

/**
 * Rollout defaults are checked as the rollout engine will read them (its own schema), so a typo
 * stops the hub at start instead of failing every deploy; commit and selection belong to a rollout.
 */
const RolloutDefaults = z.record(z.string(), z.unknown()).superRefine((defaults, ctx) => {
  for (const key of ["commit", "selection"]) {
    if (key in defaults) ctx.addIssue({ code: "custom", path: [key], message: "is chosen per rollout, not a default" });
  }
  const r = RolloutSpec.safeParse({ ...defaults, commit: "0".repeat(40) });
  if (!r.success) for (const issue of r.error.issues) ctx.addIssue({ code: "custom", path: issue.path as PropertyKey[], message: issue.message });
});

export const AutomaticSettings = z.strictObject({
  /** When the weekly flow looks for an update PR. */
  cron: CronExpression.default("0 6 * * 1"),
  timeZone: TimeZone.default("UTC"),
  /** Merge no earlier than this many minutes after the PR was opened (time for CI and humans). */
  mergeDelayMinutes: minutes.default(60),
  /** How often the weekly flow re-checks CI and the delay while it waits. */
  recheckMinutes: minutes.default(10),
  /** How long the weekly flow waits for CI and the delay before it gives up (with a notification). */
  maxWaitHours: z.number().positive().max(24 * 30).default(24),
  /** Merge Lockstep's own revert of a failed rollout's update once its CI passes, and converge the fleet onto it. */
  mergeReverts: z.boolean().default(false),
  /** After a failed rollout automatic mode pauses; a later PR whose preview builds on every host resumes it (false: only an operator does). */
  resumeOnGreenPreview: z.boolean().default(true),
});
export type AutomaticSettings = z.infer<typeof AutomaticSettings>;

/**
 * Previews of every pending lock-update PR (rollout/preview-service.ts) and what automatic mode
 * requires of them. `gating`: automatic mode merges only if the preview built on every affected
 * host it could reach ("all"), on the canary hosts ("canary"), or regardless ("ignore"). A host can
 * prove it builds only when it is asked to build, so `build` (who builds, not only evaluates)
 * defaults to what `gating` needs and must not ask less of the fleet than it does.
 */
export const PreviewSettings = z
  .strictObject({
    enabled: z.boolean().default(true),
    build: z.enum(["canary", "all", "none"]).optional(),
    /** Preview PRs whose head is in a fork (their code is not the fleet's). */
    allowForks: z.boolean().default(false),
    /** Preview PRs that change more than flake.lock. */
    allowMoreThanLock: z.boolean().default(false),
    gating: z.enum(PREVIEW_MERGE_POLICIES).optional(),
    /** One comment on the PR with the preview table, edited in place when the preview changes (github/preview-comment.ts). */
    githubComment: z.boolean().default(false),
  })
  .transform((p, ctx) => {
    if (!p.enabled && p.gating !== undefined && p.gating !== "ignore") {
      ctx.addIssue({ code: "custom", path: ["gating"], message: `previews are off (enabled: false): automatic mode could never merge with gating "${p.gating}"; set gating to "ignore" or turn previews on` });
    }
    const gating = p.gating ?? (p.enabled ? "all" : "ignore");
    const build = p.build ?? (gating === "all" ? "all" : "canary");
    const enough = gating === "ignore" || build === "all" || (gating === "canary" && build === "canary");
    if (!enough) ctx.addIssue({ code: "custom", path: ["build"], message: `gating "${gating}" needs ${gating === "all" ? "every affected host" : "the canary hosts"} to build, but build is "${build}": set build to "${gating}" (or lower gating)` });
    return { enabled: p.enabled, build, allowForks: p.allowForks, allowMoreThanLock: p.allowMoreThanLock, gating, githubComment: p.githubComment };
  });
export type PreviewSettings = z.infer<typeof PreviewSettings>;

/**
 * A bridge from the embedded broker to an upstream one (Home Assistant's MQTT 5 Mosquitto): see
 * hub/upstream-bridge.ts for what goes which way. The password comes from a file, never from the config.
 */
export const BridgeSettings = z
  .strictObject({
    url: z
      .string()
      .regex(/^(mqtts?|wss?):\/\/[^\s]+$/, { error: "expected an mqtt://, mqtts://, ws:// or wss:// URL" })
      .refine((url) => !/^[a-z]+:\/\/[^/@]*@/.test(url), { error: "must not contain a user or password: use username and passwordFile" }),
    username: z.string().min(1, { error: "must not be empty" }).optional(),
    /** File holding the upstream password (keeps the secret out of the config file and the environment). */
    passwordFile: z.string().min(1, { error: "must not be empty" }).optional(),
    clientId: z.string().regex(/^[A-Za-z0-9._-]{1,64}$/, { error: 'expected 1-64 letters, digits, ".", "_" or "-"' }).optional(),
  })
  .refine((b) => b.passwordFile === undefined || b.username !== undefined, { error: "passwordFile needs a username (MQTT 3.1.1 sends no password without one)", path: ["username"] });
export type BridgeSettings = z.infer<typeof BridgeSettings>;

export const HubSettingsSchema = z.strictObject({
  dataDir: z.string().min(1).optional(),
  http: z
    .strictObject({ host: z.string().min(1).default("0.0.0.0"), port: port.default(1880) })
    .default({ host: "0.0.0.0", port: 1880 }),
  /** Public base URL of the hub when behind a proxy (used in printed URLs and notifications). */
  publicUrl: z.string().url().optional(),
  /**
   * MQTT over WebSocket URL the fleet page's browsers use. Default: the hub's own /mqtt (embedded
   * broker), or the external broker's URL when that is a ws:// or wss:// URL.
   */
  pageMqttUrl: z.string().regex(/^wss?:\/\/\S+$/, "expected a ws:// or wss:// URL").optional(),
  github: GitHubSettings.optional(),
  notify: z.strictObject({ appriseUrl: z.string().url().optional() }).default({}),
  automatic: AutomaticSettings.default(AutomaticSettings.parse({})),
  /**
   * Defaults for the deploy nodes' rollouts (rollout/spec.ts RolloutSpec without commit and
   * selection), e.g. { "strategy": { "soakMs": 300000 }, "onFailure": "rollback-failed" }.
   */
  rollout: RolloutDefaults.default({}),
  previews: PreviewSettings.default(() => PreviewSettings.parse({})),
  homeAssistant: z
    .strictObject({
      enabled: z.boolean().default(true),
      /** The broker user Home Assistant connects as: the fleet device's buttons publish as it (Topics.hubActions(user)). */
      user: z.string().regex(USER_NAME_PATTERN, "a broker user name: 1-64 characters of A-Z, a-z, 0-9, '.', '_', '@' or '-'").default(DEFAULT_HA_USER),
    })
    .default({ enabled: true, user: DEFAULT_HA_USER }),
  /** <dataDir>/audit.jsonl is rotated before it passes maxMegabytes; keepFiles old files are kept. */
  audit: z
    .strictObject({ maxMegabytes: z.number().positive().max(10_000).default(10), keepFiles: z.number().int().min(0).max(1000).default(5) })
    .default({ maxMegabytes: 10, keepFiles: 5 }),
  /** Bridge the embedded broker to an upstream broker (embedded-broker mode only). */
  bridge: BridgeSettings.optional(),
  logLevel: LogLevel.default("info"),
  /** The broker's own section (broker/config.ts); dataDir and prefixes are shared with the hub. */
  broker: z.record(z.string(), z.unknown()).default({}),
});
export type HubSettings = z.infer<typeof HubSettingsSchema>;

/** Where state lives when neither --data-dir, the config file nor LOCKSTEP_DATA_DIR says. */
export const DEFAULT_DATA_DIR = ".lockstep-data";

/** The broker part of the hub's configuration (the embedded broker's own schema, broker/config.ts). */
export type HubBrokerConfig = BrokerConfig;

export interface HubConfig extends Omit<HubSettings, "broker" | "dataDir"> {
  dataDir: string;
  broker: HubBrokerConfig;
}

/** "repo" accepts "owner/repo" and then also sets the owner next to it. */
type HubEnvKind = EnvKind | "repo";
/** Hub environment variables (the broker's own are listed in broker/config.ts ENV_OVERRIDES). */
export const HUB_ENV_OVERRIDES: ReadonlyArray<{ env: string; path: readonly string[]; kind: HubEnvKind }> = [
  { env: "LOCKSTEP_HTTP_HOST", path: ["http", "host"], kind: "string" },
  { env: "LOCKSTEP_HTTP_PORT", path: ["http", "port"], kind: "int" },
  { env: "LOCKSTEP_PUBLIC_URL", path: ["publicUrl"], kind: "string" },
  { env: "LOCKSTEP_PAGE_MQTT_URL", path: ["pageMqttUrl"], kind: "string" },
  { env: "LOCKSTEP_GITHUB_OWNER", path: ["github", "owner"], kind: "string" },
  { env: "LOCKSTEP_GITHUB_REPO", path: ["github", "repo"], kind: "repo" },
  { env: "LOCKSTEP_GITHUB_BRANCH", path: ["github", "baseBranch"], kind: "string" },
  { env: "LOCKSTEP_GITHUB_API_URL", path: ["github", "apiBaseUrl"], kind: "string" },
  { env: "LOCKSTEP_GITHUB_TOKEN_FILE", path: ["github", "tokenFile"], kind: "string" },
  { env: "LOCKSTEP_GITHUB_WEBHOOK_SECRET_FILE", path: ["github", "webhookSecretFile"], kind: "string" },
  { env: "LOCKSTEP_APPRISE_URL", path: ["notify", "appriseUrl"], kind: "string" },
  { env: "LOCKSTEP_UPDATE_CRON", path: ["automatic", "cron"], kind: "string" },
  { env: "LOCKSTEP_TIME_ZONE", path: ["automatic", "timeZone"], kind: "string" },
  { env: "LOCKSTEP_MERGE_DELAY_MINUTES", path: ["automatic", "mergeDelayMinutes"], kind: "number" },
  { env: "LOCKSTEP_RECHECK_MINUTES", path: ["automatic", "recheckMinutes"], kind: "number" },
  { env: "LOCKSTEP_MAX_WAIT_HOURS", path: ["automatic", "maxWaitHours"], kind: "number" },
  { env: "LOCKSTEP_MERGE_REVERTS", path: ["automatic", "mergeReverts"], kind: "boolean" },
  { env: "LOCKSTEP_RESUME_ON_GREEN_PREVIEW", path: ["automatic", "resumeOnGreenPreview"], kind: "boolean" },
  { env: "LOCKSTEP_PREVIEWS_ENABLED", path: ["previews", "enabled"], kind: "boolean" },
  { env: "LOCKSTEP_PREVIEWS_BUILD", path: ["previews", "build"], kind: "string" },
  { env: "LOCKSTEP_PREVIEWS_ALLOW_FORKS", path: ["previews", "allowForks"], kind: "boolean" },
  { env: "LOCKSTEP_PREVIEWS_ALLOW_MORE_THAN_LOCK", path: ["previews", "allowMoreThanLock"], kind: "boolean" },
  { env: "LOCKSTEP_PREVIEWS_GATING", path: ["previews", "gating"], kind: "string" },
  { env: "LOCKSTEP_PREVIEWS_GITHUB_COMMENT", path: ["previews", "githubComment"], kind: "boolean" },
  { env: "LOCKSTEP_HA_ENABLED", path: ["homeAssistant", "enabled"], kind: "boolean" },
  { env: "LOCKSTEP_HA_USER", path: ["homeAssistant", "user"], kind: "string" },
  { env: "LOCKSTEP_BRIDGE_URL", path: ["bridge", "url"], kind: "string" },
  { env: "LOCKSTEP_BRIDGE_USERNAME", path: ["bridge", "username"], kind: "string" },
  { env: "LOCKSTEP_BRIDGE_PASSWORD_FILE", path: ["bridge", "passwordFile"], kind: "string" },
  { env: "LOCKSTEP_LOG_LEVEL", path: ["logLevel"], kind: "string" },
];



export interface LoadHubConfigOptions {
  file?: string;
  /** From `--data-dir`; the config file and LOCKSTEP_DATA_DIR take precedence in that order. */
  dataDir?: string;
  env?: NodeJS.ProcessEnv;
}

/** Read, merge and validate. Throws ConfigError naming the field and where it came from. */
export function loadHubConfig(options: LoadHubConfigOptions = {}): HubConfig {
  const env = options.env ?? process.env;
  const merged = options.file ? readConfigFile(options.file) : {};
  const sources: string[] = [];
  for (const { env: name, path, kind } of HUB_ENV_OVERRIDES) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    if (kind === "repo") {
      // "owner/repo" fills both fields; a bare name only the repo.
      const [owner, repo] = raw.includes("/") ? raw.split("/", 2) : [undefined, raw];
      if (owner !== undefined) setPath(merged, [...path.slice(0, -1), "owner"], owner);
      setPath(merged, path, repo);
    } else setPath(merged, path, envValue(raw, kind));
    sources.push(`${path.join(".")} from ${name}`);
  }
  const result = HubSettingsSchema.safeParse(merged);
  if (!result.success) {
    const where = sources.length ? ` (environment: ${sources.join(", ")})` : "";
    throw new ConfigError(`invalid hub config: ${formatZodError(result.error)}${where}`, "fix the field(s) named above in the config file or environment");
  }
  const settings = result.data;

  const dataDir = settings.dataDir ?? options.dataDir ?? DEFAULT_DATA_DIR;
  const broker = loadHubBrokerConfig({ env, defaults: { dataDir, ...settings.broker } });
  if (settings.bridge && broker.external) {
    throw new ConfigError(
      "invalid hub config: bridge is only for the embedded broker; with an external broker (broker.external) the hub already publishes there",
      "remove the bridge section (or LOCKSTEP_BRIDGE_*), or drop broker.external to keep the embedded broker and bridge it",
    );
  }
  const { broker: _b, dataDir: _d, ...rest } = settings;
  void _b;
  void _d;
  // The broker loader applies LOCKSTEP_DATA_DIR, so its dataDir is the one everything uses.
  return { ...rest, dataDir: broker.dataDir, broker };
}

export interface LoadHubBrokerConfigOptions {
  /** The hub's config file (or a bare broker config); optional when the environment or `defaults` give dataDir. */
  file?: string;
  env?: NodeJS.ProcessEnv;
  /** Values used when neither the file nor the environment sets them (e.g. the CLI's --data-dir). */
  defaults?: Record<string, unknown>;
}

/**
 * The broker settings inside a config file: either a bare broker config, or a hub config file
 * (`lockstep hub --config`) whose broker settings sit under "broker" next to a shared "dataDir".
 */
export function brokerSection(file: Record<string, unknown>): Record<string, unknown> {
  const nested = file.broker;
  if (typeof nested !== "object" || nested === null || Array.isArray(nested)) return file;
  return { ...(file.dataDir !== undefined ? { dataDir: file.dataDir } : {}), ...(nested as Record<string, unknown>) };
}

/**
 * The broker's configuration as `lockstep users` and the hub read it: the config file (if any),
 * then LOCKSTEP_* overrides, validated. Precedence: `defaults` < file < environment. Throws ConfigError.
 */
export function loadHubBrokerConfig(options: LoadHubBrokerConfigOptions = {}): HubBrokerConfig {
  const env = options.env ?? process.env;
  const merged: Record<string, unknown> = structuredClone(options.defaults ?? {});
  const sources = new Map<string, string>();
  if (options.file) Object.assign(merged, brokerSection(readConfigFile(options.file)));
  for (const { env: name, path, kind } of ENV_OVERRIDES) {
    const raw = env[name];
    if (raw === undefined || raw === "") continue;
    setPath(merged, path, envValue(raw, kind));
    sources.set(path.join("."), name);
  }
  return parseBrokerConfig(merged, sources);
}

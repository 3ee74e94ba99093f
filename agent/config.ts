/**
 * lockstep-agent configuration: one JSON file (written by the NixOS / nix-darwin / Home Manager
 * module, or by hand) plus a few environment overrides. Validated with zod; every error names
 * the field and says what to do.
 *
 * Example (all optional fields shown with their defaults where they have one):
 * {
 *   "host": "alpha",                              // host id: topic segment and MQTT username
 *   "broker": {
 *     "url": "mqtts://hub.example:8883",
 *     "failoverUrls": ["mqtts://broker-b.example:8883"], // optional: more nodes of a broker cluster, tried in turn
 *     "username": "alpha",                        // default: the host id
 *     "passwordFile": "/run/secrets/lockstep-agent", // read at start, never logged
 *     "clientId": "lockstep-agent-alpha",         // the default; the embedded broker accepts only this (and lockstep-self-update-alpha) from user alpha
 *     "keepaliveSeconds": 30
 *   },
 *   "topicPrefix": "lockstep",
 *   "haDiscoveryPrefix": "homeassistant",
 *   "repo": {
 *     "url": "git@github.com:acme/fleet.git",
 *     "branch": "main",
 *     "checkoutDir": "/var/lib/lockstep-agent/checkout",
 *     "sshKeyFile": "/run/secrets/deploy-key"     // optional: used for fetch/push
 *   },
 *   "stateDir": "/var/lib/lockstep-agent",
 *   "os": {
 *     "kind": "nixos",                            // nixos | darwin | home-manager | generic
 *     "flakeAttr": "alpha",                       // nixos/darwin/home-manager: <checkout>#<flakeAttr>
 *                                                 // generic: <checkout>#<flakeAttr>, default lockstepSystems.<system>.<host>
 *     "profile": "/nix/var/nix/profiles/system",  // the profile whose generations are the "system"
 *     "argv": { "switch": [[...]], "rollback": [[...]], "rollbackTo": [[...]], "eval": [...] }  // optional overrides
 *   },
 *   "testsDir": "tests",                          // relative to the checkout: tests/common, tests/<host>
 *   "tags": [], "location": "rack 2", "priority": 100, "canary": false,
 *   "hold": false,                                // initial hold (hold/release commands persist over it)
 *   "maintenanceWindow": { "days": ["sat"], "start": "02:00", "end": "05:00", "timeZone": "UTC" },
 *   "timeouts": { "pullSeconds": 300, "switchSeconds": 3600, "testSeconds": 300, "updateInputsSeconds": 900 },
 *   "preview": { "build": "canary", "dryActivate": false }, // build previews: true | false | "canary" (default)
 *   "logLevel": "info",
 *   "env": { "NIX_CONFIG": "..." },               // extra environment for git/nix/tests
 *   "git": { "authorName": "Lockstep agent", "authorEmail": "lockstep@<host>" },
 *   "selfCheck": { "path": "/run/current-system/sw/bin/lockstep-agent", "timeoutSeconds": 10 },
 *                                                 // the installed agent: `<path> version` is its version.
 *                                                 // default per os.kind: nixos, darwin /run/current-system/sw/bin/lockstep-agent,
 *                                                 // home-manager ~/.nix-profile/bin/lockstep-agent, generic none; null: none
 *   "restartAfterSwitch": "if-changed",           // after a successful switch/rollback, exit 75 for the supervisor:
 *                                                 // if-changed (the installed agent differs from the running one) | always | never
 *   "keepJobs": 20,                               // retained jobs/<id> topics kept per host; older ones are cleared
 *   "health": { "failedUnitsArgv": ["systemctl", "list-units", "--state=failed", "--plain", "--no-legend"],
 *               "activeUnits": ["sshd.service"], "tcp": [{ "host": "127.0.0.1", "port": 22 }],
 *               "http": [{ "url": "http://127.0.0.1:8080/health", "status": 200 }], "timeoutSeconds": 10 },
 *                                                 // checked by `test` besides the scripts; a unit that failed only
 *                                                 // after the last switch fails it, one failed before is reported
 *   "bootCheck": { "enabled": true, "bootConfirmSeconds": 600 }, // default on for nixos: after booting a generation a
 *                                                 // switch installed that needed a reboot, check it; unhealthy: boot the previous one, once
 *   "magicRollback": true,                        // after a switch, the hub must confirm (a `confirm` command) within
 *   "confirmTimeoutSeconds": 120,                 // this many seconds, or the agent rolls back system and checkout by itself
 *   "verifySignatures": { "allowedSigners": "/etc/lockstep/allowed_signers", "gpgHome": "/etc/lockstep/gnupg",
 *                         "timeoutSeconds": 30 } // optional: pull and switch only commits signed by an allowed key
 *                                                 // (docs/signed-commits.md); absent: no check
 * }
 *
 * argv templates are lists of argv lists. Placeholders, replaced whole-element or inside an
 * element: {checkout} {flakeAttr} {host} {system} {profile} {result} {generation}. Values come from
 * this file, except {generation}, which is a validated positive integer from a rollback command.
 *
 * Environment overrides (for quick tests and systemd drop-ins):
 *   LOCKSTEP_AGENT_BROKER_URL, LOCKSTEP_AGENT_PASSWORD_FILE, LOCKSTEP_AGENT_LOG_LEVEL, LOCKSTEP_AGENT_STATE_DIR
 */
import { homedir } from "node:os";
import { isAbsolute, join } from "node:path";
import { z } from "zod";
import { SystemStateConfig, UNIT_NAME } from "./self-update/config.js";
import { BranchName, ConfigError, MaintenanceWindow, OsKind, formatZodError, HOST_ID_PATTERN, readConfigFile, readSecretFile } from "../protocol/index.js";

const Argv = z.array(z.string().min(1)).min(1);
const ArgvList = z.array(Argv).min(1);
const absolutePath = z.string().min(1).refine((p) => isAbsolute(p), "must be an absolute path");

export const AgentConfigSchema = z
  .object({
    host: z.string().regex(HOST_ID_PATTERN, "host ids are 1-63 chars of a-z, 0-9, - and _"),
    broker: z
      .object({
        url: z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\//, "use mqtt://, mqtts://, ws:// or wss://"),
        /**
         * Other nodes of a broker cluster (broker/README.md "Several nodes"): after `url` fails or
         * drops, each reconnect tries the next URL in turn. Same scheme and path as `url`.
         */
        failoverUrls: z.array(z.string().regex(/^(mqtts?|tcp|ssl):\/\/[^\s/]+\/?$/, "use mqtt:// or mqtts://host:port")).max(16).optional(),
        username: z.string().min(1).optional(),
        passwordFile: absolutePath.optional(),
        clientId: z.string().min(1).max(200).optional(),
        keepaliveSeconds: z.number().int().positive().default(30),
        caFile: absolutePath.optional(),
      })
      .strict(),
    topicPrefix: z.string().default("lockstep"),
    haDiscoveryPrefix: z.string().default("homeassistant"),
    repo: z
      .object({
        url: z.string().min(1),
        branch: BranchName.default("main"),
        checkoutDir: absolutePath,
        sshKeyFile: absolutePath.optional(),
      })
      .strict(),
    stateDir: absolutePath,
    os: z
      .object({
        kind: OsKind,
        flakeAttr: z.string().regex(/^[A-Za-z0-9_.'"@+-]+$/, "a flake attribute path like lockstepSystems.x86_64-linux.alpha or alice@web1").optional(),
        profile: absolutePath.optional(),
        system: z.string().regex(/^[a-z0-9_]+-[a-z0-9_]+$/, "a Nix system like x86_64-linux").optional(),
        argv: z
          .object({ switch: ArgvList.optional(), rollback: ArgvList.optional(), rollbackTo: ArgvList.optional(), eval: Argv.optional() })
          .strict()
          .default({}),
      })
      .strict(),
    testsDir: z
      .string()
      .refine((p) => !isAbsolute(p) && !p.split("/").includes(".."), "must be a path inside the checkout (relative, no ..)")
      .default("tests"),
    tags: z.array(z.string().min(1).max(100)).default([]),
    location: z.string().max(200).optional(),
    priority: z.number().int().default(100),
    canary: z.boolean().default(false),
    hold: z.boolean().default(false),
    maintenanceWindow: MaintenanceWindow.optional(),
    timeouts: z
      .object({
        pullSeconds: z.number().positive().default(300),
        switchSeconds: z.number().positive().default(3600),
        testSeconds: z.number().positive().default(300),
        updateInputsSeconds: z.number().positive().default(900),
      })
      .strict()
      .default({ pullSeconds: 300, switchSeconds: 3600, testSeconds: 300, updateInputsSeconds: 900 }),
    /** The `preview` job (what a pending lock update would change here). */
    preview: z
      .object({
        /** Build when the command does not say: "canary" = only if this host is a canary. */
        build: z.union([z.boolean(), z.literal("canary")]).default("canary"),
        /** Ask the new system's bin/switch-to-configuration for dry-activate also off NixOS (NixOS always does). */
        dryActivate: z.boolean().default(false),
      })
      .strict()
      .default({ build: "canary", dryActivate: false }),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace", "silent"]).default("info"),
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/, "environment variable names are [A-Za-z_][A-Za-z0-9_]*"), z.string()).default({}),
    git: z
      .object({ authorName: z.string().min(1).optional(), authorEmail: z.string().min(1).optional() })
      .strict()
      .default({}),
    selfCheck: z
      .object({
        path: absolutePath.nullable().optional(),
        timeoutSeconds: z.number().positive().default(10),
      })
      .strict()
      .default({ timeoutSeconds: 10 }),
    restartAfterSwitch: z.enum(["if-changed", "always", "never"]).default("if-changed"),
    keepJobs: z.number().int().min(1).max(10_000).default(20),
    /**
     * Health beyond the test scripts, checked by the `test` op (so by a rollout's health gate). All
     * argv and addresses come from this file, never from the network.
     */
    health: z
      .object({
        /** Lists failed units, one per line, name first; null: no systemd. Default: systemctl on nixos. */
        failedUnitsArgv: Argv.nullable().optional(),
        /** Units that must be active, each checked with isActiveArgv ({unit} is the unit). */
        activeUnits: z.array(z.string().regex(UNIT_NAME, "a systemd unit name like sshd.service")).max(100).default([]),
        isActiveArgv: Argv.default(["systemctl", "is-active", "--quiet", "{unit}"]),
        /** TCP endpoints that must accept a connection. */
        tcp: z.array(z.object({ host: z.string().min(1).max(255), port: z.number().int().min(1).max(65_535) }).strict()).max(100).default([]),
        /** HTTP(S) endpoints that must answer with a status below 400 (or exactly `status`). */
        http: z
          .array(z.object({ url: z.string().regex(/^https?:\/\/[^\s]+$/, "an http:// or https:// URL"), status: z.number().int().min(100).max(599).optional() }).strict())
          .max(100)
          .default([]),
        timeoutSeconds: z.number().positive().max(600).default(10),
      })
      .strict()
      .prefault({}),
    /**
     * Only deploy what the admin signed (agent/signatures.ts): a pull or switch of a commit whose
     * signature is not from an allowed key is refused. Absent: commits are not checked.
     */
    verifySignatures: z
      .object({
        /** ssh allowed_signers file (`ssh-keygen -Y`, git's gpg.ssh.allowedSignersFile) for SSH signatures. */
        allowedSigners: absolutePath.optional(),
        /** A GnuPG home holding only the allowed public keys, for GPG signatures (GitHub's web-flow key for web merges). */
        gpgHome: absolutePath.optional(),
        /** The programs git runs to verify (git's gpg.program and gpg.ssh.program). */
        gpgProgram: z.string().min(1).default("gpg"),
        sshKeygenProgram: z.string().min(1).default("ssh-keygen"),
        timeoutSeconds: z.number().positive().max(600).default(30),
      })
      .strict()
      .refine((v) => v.allowedSigners !== undefined || v.gpgHome !== undefined, "set allowedSigners (SSH keys), gpgHome (GPG keys) or both")
      .optional(),
    /** After a switch, roll back by itself unless the hub confirms within confirmTimeoutSeconds. */
    magicRollback: z.boolean().default(true),
    confirmTimeoutSeconds: z.number().positive().max(86_400).default(120),
    /**
     * Boot rollback (agent/boot-rollback.ts): a switch whose generation needs a reboot (kernel,
     * initrd, modules) leaves a marker; the agent's first start after booting that generation checks
     * it within bootConfirmSeconds and, unhealthy, makes the previous generation the boot default
     * and reboots, once. Default: on for nixos (off elsewhere: no booted system to compare with).
     */
    bootCheck: z
      .object({
        enabled: z.boolean().optional(),
        bootConfirmSeconds: z.number().int().positive().max(86_400).default(600),
        /** The running kernel's system. */
        bootedSystem: absolutePath.default("/run/booted-system"),
        /** This boot's id: the check waits for a boot after the switch. null: unknown (the next start counts as after a boot). */
        bootIdFile: absolutePath.nullable().default("/proc/sys/kernel/random/boot_id"),
        systemState: SystemStateConfig,
        /** How often a system still starting is asked again. */
        pollSeconds: z.number().positive().max(300).default(5),
        /** Run the host's test scripts (testsDir), besides the declared `health` checks. */
        tests: z.boolean().default(true),
        /** Make {generation} of {profile} the boot default; default per os.kind (nixos: nix-env --switch-generation + switch-to-configuration boot). */
        rollbackArgvs: ArgvList.optional(),
        /** Scheduled a minute ahead, so the check is reported first. */
        rebootArgv: Argv.default(["shutdown", "-r", "+1", "lockstep: the booted generation failed its boot check"]),
      })
      .strict()
      .prefault({}),
  })
  .strict();

export type AgentConfigInput = z.input<typeof AgentConfigSchema>;
export type AgentConfig = z.infer<typeof AgentConfigSchema> & {
  /** Resolved at load time (not part of the file): the broker password, kept out of logs. */
  brokerPassword?: string;
};

/**
 * The installed agent binary whose `version` tells what a restart would run, or undefined when
 * there is none to check (generic profile without selfCheck.path, or selfCheck.path null).
 */
export function selfCheckPathOf(config: AgentConfig): string | undefined {
  const p = config.selfCheck.path;
  if (p === null) return undefined;
  if (p !== undefined) return p;
  switch (config.os.kind) {
    case "nixos":
    case "darwin":
      return "/run/current-system/sw/bin/lockstep-agent";
    case "home-manager":
      return join(homedir(), ".nix-profile", "bin", "lockstep-agent");
    default:
      return undefined;
  }
}

/** How to list failed systemd units, or undefined without systemd (default: systemctl on nixos). */
export function failedUnitsArgvOf(config: AgentConfig): string[] | undefined {
  const a = config.health.failedUnitsArgv;
  if (a === null) return undefined;
  if (a !== undefined) return a;
  return config.os.kind === "nixos" ? ["systemctl", "list-units", "--state=failed", "--plain", "--no-legend"] : undefined;
}

/** Where the agent keeps its durable state, all under stateDir. */
export function statePaths(stateDir: string) {
  return {
    state: join(stateDir, "agent-state.json"),
    inflight: join(stateDir, "inflight-job.json"),
    jobsDir: join(stateDir, "jobs"),
    publishedJobs: join(stateDir, "published-jobs.json"),
    result: join(stateDir, "result"),
    /** The daemon's switch awaiting the hub's confirmation (magic-rollback.ts). */
    awaitingConfirmation: join(stateDir, "awaiting-confirmation.json"),
    /** A self-update run's switch awaiting the hub's confirmation, with the run to finish (self-update/confirmation.ts). */
    selfUpdateConfirmation: join(stateDir, "self-update-confirmation.json"),
    /** Held by a running `lockstep-agent self-update` (agent/self-update/lock.ts). */
    selfUpdateLock: join(stateDir, "self-update.lock"),
  };
}

const ENV_OVERRIDES: Array<[string, (raw: Record<string, unknown>, v: string) => void]> = [
  ["LOCKSTEP_AGENT_BROKER_URL", (raw, v) => ((raw.broker ??= {}) as Record<string, unknown>).url = v],
  ["LOCKSTEP_AGENT_PASSWORD_FILE", (raw, v) => ((raw.broker ??= {}) as Record<string, unknown>).passwordFile = v],
  ["LOCKSTEP_AGENT_LOG_LEVEL", (raw, v) => (raw.logLevel = v)],
  ["LOCKSTEP_AGENT_STATE_DIR", (raw, v) => (raw.stateDir = v)],
];

/** Validate an already-parsed config object (env overrides applied). Throws ConfigError. */
export function parseAgentConfig(raw: unknown, env: NodeJS.ProcessEnv = {}, source = "config"): AgentConfig {
  if (typeof raw !== "object" || raw === null || Array.isArray(raw)) {
    throw new ConfigError(`${source}: expected a JSON object`, "see agent/config.ts for an example");
  }
  const merged = structuredClone(raw) as Record<string, unknown>;
  for (const [name, apply] of ENV_OVERRIDES) {
    const v = env[name];
    if (v !== undefined && v !== "") apply(merged, v);
  }
  const r = AgentConfigSchema.safeParse(merged);
  if (!r.success) {
    throw new ConfigError(`${source}: ${formatZodError(r.error)}`, "fix the named field (see agent/config.ts for every field)");
  }
  return r.data;
}

/** Read the config file, apply env overrides, validate, and read the broker password file. */
export function loadAgentConfig(file: string, env: NodeJS.ProcessEnv = process.env): AgentConfig {
  const config = parseAgentConfig(readConfigFile(file), env, file);
  if (config.broker.passwordFile) config.brokerPassword = readSecretFile(config.broker.passwordFile, "broker.passwordFile");
  return config;
}

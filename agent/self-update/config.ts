/**
 * Configuration of the standalone nightly self-update (`lockstep-agent self-update`).
 *
 * It is its own JSON file (the NixOS module writes /etc/lockstep/self-update.json) so a host
 * without a hub needs nothing else. Every field is validated here; defaults match a NixOS host.
 */
import { z } from "zod";
import { ConfigError, FlakeInputName, MaintenanceWindow, BranchName, formatZodError, HOST_ID_PATTERN, readConfigFile } from "../../protocol/index.js";
import { REBOOT_COMPONENTS } from "../../protocol/reboot.js";

/** An argv array: program first, never shell text. `{placeholders}` are filled per run (os-profiles.ts expandArgv). */
const Argv = z.array(z.string()).min(1, "an argv needs at least the program");

/** A systemd unit name (name.type, templates with @). */
export const UNIT_NAME = /^[A-Za-z0-9:_.@\\-]+\.[a-z]+$/;

export const SELF_UPDATE_PROFILES = ["nixos", "darwin", "home-manager", "generic"] as const;
export const SelfUpdateProfileName = z.enum(SELF_UPDATE_PROFILES);
export type SelfUpdateProfileName = z.infer<typeof SelfUpdateProfileName>;

/** systemd's state (`systemctl is-system-running`): also the agent daemon's boot check (agent/config.ts bootCheck). */
export const SystemStateConfig = z
  .object({
    enabled: z.boolean().default(true),
    argv: Argv.default(["systemctl", "is-system-running"]),
    /** States printed by the argv that count as healthy. */
    accepted: z.array(z.string().regex(/^[a-z-]+$/)).min(1).default(["running"]),
  })
  .strict()
  .prefault({});

export const HealthConfig = z
  .object({
    disk: z
      .object({
        enabled: z.boolean().default(true),
        /** Filesystem to measure (the one holding /nix on most hosts). */
        path: z.string().default("/"),
        /** Abort when more than this share of the filesystem is used. */
        maxUsedPercent: z.number().min(1).max(100).default(90),
      })
      .strict()
      .prefault({}),
    systemState: SystemStateConfig,
    /** Failed systemd units: reported on every run; only the `required` ones stop it. */
    failedUnits: z
      .object({
        enabled: z.boolean().default(true),
        /** Prints the failed units, one per line, unit name first. */
        argv: Argv.default(["systemctl", "list-units", "--state=failed", "--plain", "--no-legend", "--no-pager"]),
        /** Units that must not be failed for the run to go ahead. */
        required: z.array(z.string().regex(UNIT_NAME, "a systemd unit name like nix-daemon.service")).default([]),
      })
      .strict()
      .prefault({}),
    uptime: z
      .object({
        enabled: z.boolean().default(true),
        /** Do not update a host that has just booted (it may be in a reboot loop). */
        minSeconds: z.number().int().nonnegative().default(600),
        /** A file in /proc/uptime format; null: the OS's uptime (os.uptime(), also on macOS). */
        uptimeFile: z.string().nullable().default(null),
      })
      .strict()
      .prefault({}),
  })
  .strict();
export type HealthConfig = z.infer<typeof HealthConfig>;

export const RebootConfig = z
  .object({
    enabled: z.boolean().default(true),
    /** Schedules the reboot a minute ahead so the run can be recorded and reported first. */
    argv: Argv.default(["shutdown", "-r", "+1", "lockstep self-update: kernel, initrd or modules changed"]),
    /** Reboots happen only inside this window; null means whenever the run happens. */
    window: MaintenanceWindow.nullable().default(null),
    /** The running kernel's system (what was booted). */
    bootedSystem: z.string().default("/run/booted-system"),
    /** This boot's id: the boot check waits for a boot after the marker's. null: unknown (every check counts as after a boot). */
    bootIdFile: z.string().nullable().default("/proc/sys/kernel/random/boot_id"),
    /** Entries of a system closure whose change needs a reboot. */
    components: z.array(z.string().regex(/^[A-Za-z0-9._-]+$/)).min(1).default([...REBOOT_COMPONENTS]),
  })
  .strict();
export type RebootConfig = z.infer<typeof RebootConfig>;

/** What `lockstep-agent boot-check` checks after booting a new generation, besides health.systemState and health.failedUnits.required. */
export const BootCheckConfig = z
  .object({
    /** Units that must be active once booted (e.g. lockstep-agent.service: the agent's own start). */
    activeUnits: z.array(z.string().regex(UNIT_NAME, "a systemd unit name like lockstep-agent.service")).default([]),
    activeUnitArgv: Argv.default(["systemctl", "is-active", "--quiet", "{unit}"]),
    /** Run the host's test scripts (<checkoutDir>/<testsDir>/common and /<host>), as the agent's `test` does. */
    tests: z.boolean().default(true),
    testsDir: z
      .string()
      .refine((p) => !p.startsWith("/") && !p.split("/").includes(".."), "must be a path inside the checkout (relative, no ..)")
      .default("tests"),
    /** How often a state that is still starting is asked again. */
    pollSeconds: z.number().positive().max(300).default(5),
    /**
     * Make the previous generation the boot default, with {profile} {generation} {host}. Default per
     * profile: nixos `nix-env --switch-generation` + its `switch-to-configuration boot` (what
     * `nixos-rebuild boot --rollback` does: bootloader entry, no activation now).
     */
    rollbackArgvs: z.array(Argv).min(1).optional(),
  })
  .strict();
export type BootCheckConfig = z.infer<typeof BootCheckConfig>;

/** Same shape as the agent config's `broker` (agent/config.ts), so one set of NixOS options feeds both. */
export const BrokerReportConfig = z
  .object({
    url: z.string().regex(/^(mqtts?|wss?|tcp|ssl):\/\//, "use mqtt://, mqtts://, ws:// or wss://"),
    /** Default: the host id (agents authenticate as their host). */
    username: z.string().min(1).optional(),
    /** Read at run time, never logged. */
    passwordFile: z.string().min(1).optional(),
    caFile: z.string().min(1).optional(),
    connectTimeoutMs: z.number().int().positive().default(5000),
  })
  .strict();
export type BrokerReportConfig = z.infer<typeof BrokerReportConfig>;

export const SelfUpdateConfig = z
  .object({
    host: z.string().regex(HOST_ID_PATTERN, "host ids are 1-63 chars of a-z, 0-9, - and _"),
    stateDir: z.string().default("/var/lib/lockstep-agent"),
    /** The flake checkout this host builds from. */
    checkoutDir: z.string(),
    /** Cloned into checkoutDir when that is not a git checkout yet (hosts without the agent daemon). */
    repoUrl: z.string().min(1).optional(),
    /** Deploy key for fetch/pull over ssh. */
    sshKeyFile: z.string().min(1).optional(),
    /** "flake-update": `nix flake update` here (home lab without CI); "git-pull": take what CI committed. */
    mode: z.enum(["flake-update", "git-pull"]).default("flake-update"),
    /** Inputs to update in flake-update mode; empty = all. */
    inputs: z.array(FlakeInputName).default([]),
    /** Commit the updated flake.lock in the checkout so `git log` shows what changed. */
    commitLock: z.boolean().default(true),
    remote: z.string().regex(/^[A-Za-z0-9._-]+$/).default("origin"),
    branch: BranchName.default("main"),
    profile: SelfUpdateProfileName.default("nixos"),
    /** Flake attribute to build; the default depends on the profile (see profileCommands). */
    attribute: z.string().regex(/^[A-Za-z0-9._"-]+$/).optional(),
    /** The Nix profile whose generations count (system profile on NixOS/darwin). */
    systemProfile: z.string().default("/nix/var/nix/profiles/system"),
    /** Override the profile's commands; argv arrays with {flake} {attr} {out} {profile} {host}. */
    buildArgv: Argv.optional(),
    switchArgvs: z.array(Argv).min(1).optional(),
    stepTimeoutSeconds: z.number().int().positive().default(3600),
    health: HealthConfig.prefault({}),
    reboot: RebootConfig.prefault({}),
    /**
     * Magic rollback (confirmation.ts): with a broker, a run that switched waits confirmTimeoutSeconds
     * for the hub's `confirm {job: <run id>}` over a connection opened after the switch; without it,
     * it switches back to the previous generation and puts the checkout back. No broker: no wait.
     */
    magicRollback: z.boolean().default(true),
    confirmTimeoutSeconds: z.number().positive().max(86_400).default(120),
    /** How the magic rollback activates {generation} again; default per profile (nixos: --switch-generation + switch-to-configuration switch). */
    rollbackArgvs: z.array(Argv).min(1).optional(),
    /**
     * After a reboot the self-update asked for, `lockstep-agent boot-check` (boot-check.ts) has this
     * long to see the new generation healthy; otherwise it makes the previous generation the boot
     * default and reboots, once.
     */
    bootConfirmSeconds: z.number().int().positive().max(86_400).default(600),
    bootCheck: BootCheckConfig.prefault({}),
    /** When set, each run is also reported to the hub as a job (op "self-update"; a boot check: "boot-check"). */
    broker: BrokerReportConfig.nullable().default(null),
    topicPrefix: z.string().default("lockstep"),
    /** Extra environment for git and nix (e.g. NIX_CONFIG). */
    env: z.record(z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/), z.string()).default({}),
    /** Shown by `lockstep-agent status`: argv printing NextElapseUSecRealtime=...; null where the scheduler cannot be asked (launchd). */
    nextRunArgv: Argv.nullable().default(["systemctl", "show", "lockstep-self-update.timer", "-p", "NextElapseUSecRealtime"]),
    logLevel: z.enum(["fatal", "error", "warn", "info", "debug", "trace"]).default("info"),
  })
  .strict();
export type SelfUpdateConfig = z.infer<typeof SelfUpdateConfig>;
export type SelfUpdateConfigInput = z.input<typeof SelfUpdateConfig>;

export const DEFAULT_SELF_UPDATE_CONFIG_PATH = "/etc/lockstep/self-update.json";

/** Where the config is looked for without --config: the system's (NixOS, nix-darwin), then the user's (Home Manager). */
export function defaultSelfUpdateConfigPaths(env: NodeJS.ProcessEnv = process.env): string[] {
  const configHome = env.XDG_CONFIG_HOME || (env.HOME ? `${env.HOME}/.config` : undefined);
  return [DEFAULT_SELF_UPDATE_CONFIG_PATH, ...(configHome ? [`${configHome}/lockstep/self-update.json`] : [])];
}

export function parseSelfUpdateConfig(json: unknown, source = "self-update config"): SelfUpdateConfig {
  const r = SelfUpdateConfig.safeParse(json);
  if (!r.success) throw new ConfigError(`${source} is invalid: ${formatZodError(r.error)}`, "fix the file (the NixOS option services.lockstep-agent.selfUpdate writes it)");
  return r.data;
}

export function loadSelfUpdateConfig(path = DEFAULT_SELF_UPDATE_CONFIG_PATH): SelfUpdateConfig {
  return parseSelfUpdateConfig(readConfigFile(path), path);
}

export interface ProfileCommands {
  attribute: string;
  build: string[];
  switches: string[][];
}

/**
 * What each OS profile builds and how it switches. The build always makes an out-link first, so a
 * failed build never touches the running system; the switch is the same sequence nixos-rebuild,
 * darwin-rebuild and home-manager run, split so the built path is known before switching.
 */
export function profileCommands(cfg: SelfUpdateConfig, system: string): ProfileCommands {
  const defaults: Record<SelfUpdateProfileName, { attribute: string; switches: string[][] }> = {
    nixos: {
      attribute: `nixosConfigurations.${cfg.host}.config.system.build.toplevel`,
      switches: [["nix-env", "--profile", "{profile}", "--set", "{out}"], ["{out}/bin/switch-to-configuration", "switch"]],
    },
    darwin: {
      attribute: `darwinConfigurations.${cfg.host}.system`,
      switches: [["nix-env", "--profile", "{profile}", "--set", "{out}"], ["{out}/activate"]],
    },
    "home-manager": {
      attribute: `homeConfigurations.${cfg.host}.activationPackage`,
      switches: [["{out}/activate"]],
    },
    generic: {
      attribute: `lockstepSystems.${system}.${cfg.host}`,
      switches: [["nix-env", "--profile", "{profile}", "--set", "{out}"]],
    },
  };
  const d = defaults[cfg.profile];
  return {
    attribute: cfg.attribute ?? d.attribute,
    build: cfg.buildArgv ?? ["nix", "build", "{flake}#{attr}", "-o", "{out}"],
    switches: cfg.switchArgvs ?? d.switches,
  };
}

/** How a profile makes generation {generation} the boot default again (boot-check.ts). */
export function bootRollbackArgvs(cfg: SelfUpdateConfig): string[][] {
  return cfg.bootCheck.rollbackArgvs ?? generationArgvs(cfg.profile, "boot");
}

/** How a profile activates generation {generation} again now (confirmation.ts: magic rollback). */
export function switchBackArgvs(cfg: SelfUpdateConfig): string[][] {
  return cfg.rollbackArgvs ?? generationArgvs(cfg.profile, "switch");
}

/** How a profile makes {generation} of {profile} current: for the next boot only ("boot", NixOS) or now. */
export function generationArgvs(profile: SelfUpdateProfileName, nixosAction: "boot" | "switch"): string[][] {
  const select = ["nix-env", "--profile", "{profile}", "--switch-generation", "{generation}"];
  switch (profile) {
    case "nixos":
      return [select, ["{profile}/bin/switch-to-configuration", nixosAction]];
    case "darwin":
    case "home-manager":
      return [select, ["{profile}/activate"]];
    default:
      return [select];
  }
}

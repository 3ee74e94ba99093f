/**
 * The argv the agent runs for switch and rollback, per OS profile. Everything here comes from the
 * agent's own config; the only values a command payload can contribute are a rollback generation
 * (a validated positive integer) and, for update-inputs, validated flake input names.
 */
import { join } from "node:path";
import { homedir } from "node:os";
import { FlakeInputName, LockstepError, type OsKind } from "../protocol/index.js";
import type { AgentConfig } from "./config.js";
import { statePaths } from "./config.js";

/** One process to run: a label for summaries ("build", "activate"), argv, optional cwd. */
export interface Step {
  label: string;
  argv: string[];
  cwd?: string;
}

export class ArgvError extends LockstepError {
  override name = "ArgvError";
  constructor(message: string) {
    super(message, "argv", "only validated command arguments may reach a command line");
  }
}

interface Templates {
  switch: string[][];
  rollback: string[][];
  rollbackTo: string[][];
  /** Prints the store path the checked-out configuration builds to, without building it. */
  eval: string[];
}

const DEFAULT_TEMPLATES: Record<OsKind, Templates> = {
  generic: {
    switch: [
      ["nix", "build", "{checkout}#{flakeAttr}", "-o", "{result}"],
      ["nix-env", "--profile", "{profile}", "--set", "{result}"],
    ],
    rollback: [["nix-env", "--profile", "{profile}", "--rollback"]],
    rollbackTo: [["nix-env", "--profile", "{profile}", "--switch-generation", "{generation}"]],
    eval: ["nix", "eval", "--raw", "{checkout}#{flakeAttr}.outPath"],
  },
  nixos: {
    switch: [["nixos-rebuild", "switch", "--flake", "{checkout}#{flakeAttr}"]],
    rollback: [["nixos-rebuild", "switch", "--rollback"]],
    rollbackTo: [
      ["nix-env", "--profile", "{profile}", "--switch-generation", "{generation}"],
      ["{profile}/bin/switch-to-configuration", "switch"],
    ],
    eval: ["nix", "eval", "--raw", "{checkout}#nixosConfigurations.{flakeAttr}.config.system.build.toplevel.outPath"],
  },
  darwin: {
    switch: [["darwin-rebuild", "switch", "--flake", "{checkout}#{flakeAttr}"]],
    rollback: [["darwin-rebuild", "--rollback"]],
    rollbackTo: [["darwin-rebuild", "--switch-generation", "{generation}"]],
    eval: ["nix", "eval", "--raw", "{checkout}#darwinConfigurations.{flakeAttr}.system.outPath"],
  },
  "home-manager": {
    switch: [["home-manager", "switch", "--flake", "{checkout}#{flakeAttr}"]],
    rollback: [
      ["nix-env", "--profile", "{profile}", "--rollback"],
      ["{profile}/activate"],
    ],
    rollbackTo: [
      ["nix-env", "--profile", "{profile}", "--switch-generation", "{generation}"],
      ["{profile}/activate"],
    ],
    eval: ["nix", "eval", "--raw", '{checkout}#homeConfigurations."{flakeAttr}".activationPackage.outPath'],
  },
};

/** The Nix system of this machine, e.g. x86_64-linux. */
export function localNixSystem(): string {
  const arch = process.arch === "arm64" ? "aarch64" : process.arch === "x64" ? "x86_64" : process.arch;
  const os = process.platform === "darwin" ? "darwin" : "linux";
  return `${arch}-${os}`;
}

export function nixSystemOf(config: AgentConfig): string {
  return config.os.system ?? localNixSystem();
}

export function flakeAttrOf(config: AgentConfig): string {
  if (config.os.flakeAttr) return config.os.flakeAttr;
  return config.os.kind === "generic" ? `lockstepSystems.${nixSystemOf(config)}.${config.host}` : config.host;
}

/** The Nix profile whose generations are this host's "system". */
export function profilePathOf(config: AgentConfig): string {
  if (config.os.profile) return config.os.profile;
  switch (config.os.kind) {
    case "generic":
      return join(config.stateDir, "profiles", "system");
    case "home-manager":
      return join(homedir(), ".local", "state", "nix", "profiles", "home-manager");
    default:
      return "/nix/var/nix/profiles/system";
  }
}

const PLACEHOLDER = /\{([a-zA-Z]+)\}/g;

/** Replace {name} placeholders; an unknown placeholder is a config error, not silently left in. */
export function expandArgv(template: string[], vars: Record<string, string>): string[] {
  return template.map((el) =>
    el.replace(PLACEHOLDER, (_m, name: string) => {
      const v = vars[name];
      if (v === undefined) throw new ArgvError(`argv template uses {${name}}, which is not available here`);
      return v;
    }),
  );
}

function baseVars(config: AgentConfig): Record<string, string> {
  return {
    checkout: config.repo.checkoutDir,
    flakeAttr: flakeAttrOf(config),
    host: config.host,
    system: nixSystemOf(config),
    profile: profilePathOf(config),
    result: statePaths(config.stateDir).result,
  };
}

function labelFor(kind: "switch" | "rollback", i: number, n: number): string {
  if (kind === "rollback") return n === 1 ? "rollback" : i === 0 ? "select generation" : "activate";
  return n === 1 ? "switch" : i === 0 ? "build" : "activate";
}

function templatesOf(config: AgentConfig): Templates {
  const d = DEFAULT_TEMPLATES[config.os.kind];
  return {
    switch: config.os.argv.switch ?? d.switch,
    rollback: config.os.argv.rollback ?? d.rollback,
    rollbackTo: config.os.argv.rollbackTo ?? d.rollbackTo,
    eval: config.os.argv.eval ?? d.eval,
  };
}

/** Evaluate (not build) the checked-out configuration: prints its store path on stdout. */
export function evalArgv(config: AgentConfig): string[] {
  return expandArgv(templatesOf(config).eval, baseVars(config));
}

/** Build and activate the checked-out configuration. */
export function switchSteps(config: AgentConfig): Step[] {
  const t = templatesOf(config).switch;
  const vars = baseVars(config);
  return t.map((argv, i) => ({ label: labelFor("switch", i, t.length), argv: expandArgv(argv, vars), cwd: config.repo.checkoutDir }));
}

/** Roll back to the previous generation, or to an exact one. */
export function rollbackSteps(config: AgentConfig, generation?: number): Step[] {
  const vars = baseVars(config);
  let t = templatesOf(config).rollback;
  if (generation !== undefined) {
    if (!Number.isSafeInteger(generation) || generation <= 0) throw new ArgvError(`generation must be a positive integer, got ${String(generation)}`);
    vars.generation = String(generation);
    t = templatesOf(config).rollbackTo;
  }
  return t.map((argv, i) => ({ label: labelFor("rollback", i, t.length), argv: expandArgv(argv, vars), cwd: config.repo.checkoutDir }));
}

/**
 * `nix flake update` for all inputs, or `nix flake lock --update-input X ...` for some (a form
 * both Nix 2.8 and current Nix accept). Input names are re-validated here as a second line.
 */
export function updateInputsArgv(inputs?: string[]): string[] {
  if (!inputs || inputs.length === 0) return ["nix", "flake", "update"];
  const args = ["nix", "flake", "lock"];
  for (const name of inputs) {
    if (!FlakeInputName.safeParse(name).success) throw new ArgvError(`"${name}" is not a flake input name`);
    args.push("--update-input", name);
  }
  return args;
}

/** A full 40-hex commit sha, re-checked before it is put on a git command line. */
export function assertCommitSha(sha: string): string {
  if (!/^[0-9a-f]{40}$/.test(sha)) throw new ArgvError(`"${sha}" is not a full commit sha`);
  return sha;
}

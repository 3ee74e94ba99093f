/**
 * argv building: everything comes from the agent's config; a command payload can only contribute
 * a validated commit sha, a generation number or validated flake input names.
 */
import { describe, expect, it } from "vitest";
import { parseAgentConfig, type AgentConfigInput } from "../../agent/config.js";
import { ArgvError, assertCommitSha, evalArgv, expandArgv, rollbackSteps, switchSteps, updateInputsArgv } from "../../agent/os-profiles.js";
import { GitCheckout } from "../../agent/git.js";
import { Command, decodeJson } from "../../protocol/index.js";

const config = (os: AgentConfigInput["os"]) =>
  parseAgentConfig({
    host: "web1",
    broker: { url: "mqtt://hub:1883" },
    repo: { url: "file:///srv/fleet.git", checkoutDir: "/var/lib/la/checkout" },
    stateDir: "/var/lib/la",
    os,
  });

describe("OS profile argv", () => {
  it("generic: nix build to <stateDir>/result, then nix-env --set on the profile", () => {
    const c = config({ kind: "generic", profile: "/var/lib/la/profiles/system", system: "x86_64-linux" });
    expect(switchSteps(c).map((s) => [s.label, s.argv])).toEqual([
      ["build", ["nix", "build", "/var/lib/la/checkout#lockstepSystems.x86_64-linux.web1", "-o", "/var/lib/la/result"]],
      ["activate", ["nix-env", "--profile", "/var/lib/la/profiles/system", "--set", "/var/lib/la/result"]],
    ]);
    expect(rollbackSteps(c).map((s) => s.argv)).toEqual([["nix-env", "--profile", "/var/lib/la/profiles/system", "--rollback"]]);
    expect(rollbackSteps(c, 7).map((s) => s.argv)).toEqual([["nix-env", "--profile", "/var/lib/la/profiles/system", "--switch-generation", "7"]]);
    expect(evalArgv(c)).toEqual(["nix", "eval", "--raw", "/var/lib/la/checkout#lockstepSystems.x86_64-linux.web1.outPath"]);
    expect(evalArgv(config({ kind: "home-manager", flakeAttr: "alice@web1" }))).toEqual([
      "nix",
      "eval",
      "--raw",
      '/var/lib/la/checkout#homeConfigurations."alice@web1".activationPackage.outPath',
    ]);
  });

  it("nixos, darwin and home-manager use their rebuild tools with <checkout>#<flakeAttr>", () => {
    expect(switchSteps(config({ kind: "nixos" }))[0]!.argv).toEqual(["nixos-rebuild", "switch", "--flake", "/var/lib/la/checkout#web1"]);
    expect(rollbackSteps(config({ kind: "nixos" }))[0]!.argv).toEqual(["nixos-rebuild", "switch", "--rollback"]);
    expect(rollbackSteps(config({ kind: "nixos" }), 3).map((s) => s.argv)).toEqual([
      ["nix-env", "--profile", "/nix/var/nix/profiles/system", "--switch-generation", "3"],
      ["/nix/var/nix/profiles/system/bin/switch-to-configuration", "switch"],
    ]);
    expect(switchSteps(config({ kind: "darwin", flakeAttr: "mac-mini" }))[0]!.argv).toEqual(["darwin-rebuild", "switch", "--flake", "/var/lib/la/checkout#mac-mini"]);
    expect(rollbackSteps(config({ kind: "darwin" }), 4)[0]!.argv).toEqual(["darwin-rebuild", "--switch-generation", "4"]);
    expect(switchSteps(config({ kind: "home-manager", flakeAttr: "alice@web1" }))[0]!.argv).toEqual([
      "home-manager",
      "switch",
      "--flake",
      "/var/lib/la/checkout#alice@web1",
    ]);
  });

  it("config templates override the defaults; unknown placeholders are errors, not literal text", () => {
    const c = config({ kind: "nixos", argv: { switch: [["sudo", "nixos-rebuild", "switch", "--flake", "{checkout}#{host}", "--option", "x", "{profile}"]] } });
    expect(switchSteps(c)[0]!.argv).toEqual(["sudo", "nixos-rebuild", "switch", "--flake", "/var/lib/la/checkout#web1", "--option", "x", "/nix/var/nix/profiles/system"]);
    expect(() => switchSteps(config({ kind: "nixos", argv: { switch: [["echo", "{payload}"]] } }))).toThrow(ArgvError);
    // {generation} only exists for an exact rollback
    expect(() => switchSteps(config({ kind: "nixos", argv: { switch: [["x", "{generation}"]] } }))).toThrow(/\{generation\}/);
    expect(expandArgv(["a{host}b", "{host}"], { host: "h" })).toEqual(["ahb", "h"]);
  });

  it("payload values reach argv only after validation", () => {
    const c = config({ kind: "generic", system: "x86_64-linux" });
    for (const bad of [0, -1, 1.5, Number.NaN]) expect(() => rollbackSteps(c, bad)).toThrow(ArgvError);
    expect(() => updateInputsArgv(["nixpkgs; rm -rf /"])).toThrow(ArgvError);
    expect(() => updateInputsArgv(["--override-input"])).toThrow(ArgvError);
    expect(updateInputsArgv()).toEqual(["nix", "flake", "update"]);
    expect(updateInputsArgv(["nixpkgs", "home-manager/nixpkgs"])).toEqual(["nix", "flake", "lock", "--update-input", "nixpkgs", "--update-input", "home-manager/nixpkgs"]);
    expect(() => assertCommitSha("HEAD")).toThrow(ArgvError);
    expect(() => assertCommitSha("--upload-pack=evil")).toThrow(ArgvError);
    const git = new GitCheckout({ dir: "/c", url: "file:///o", branch: "main", env: {}, timeoutMs: 1000 });
    const sha = "0123456789abcdef0123456789abcdef01234567";
    expect(git.checkoutArgs(sha)).toEqual(["checkout", "-q", "-B", "main", sha]);
    expect(() => git.checkoutArgs("-b x")).toThrow(ArgvError);
  });

  it("the Command schema refuses shell text in every argument that could reach argv", () => {
    const base = { id: "c1", issuedAt: new Date().toISOString(), expiresAt: new Date(Date.now() + 60_000).toISOString(), requestedBy: "t" };
    const hostile = [
      { op: "pull", args: { commit: "$(reboot)" } },
      { op: "pull", args: { commit: "0123456789abcdef0123456789abcdef01234567 --force" } },
      { op: "switch", args: { commit: "main" } },
      { op: "switch", args: { argv: ["rm", "-rf", "/"] } },
      { op: "rollback", args: { generation: "3; reboot" } },
      { op: "rollback", args: { generation: 0 } },
      { op: "update-inputs", args: { inputs: ["nixpkgs && reboot"] } },
      { op: "update-inputs", args: { inputs: ["-x"] } },
      { op: "update-inputs", args: { branch: "--force" } },
      { op: "test", args: { script: "/bin/sh" } },
      { op: "exec", args: {} },
    ];
    for (const h of hostile) expect(decodeJson(Command, JSON.stringify({ ...base, ...h })).ok, JSON.stringify(h)).toBe(false);
  });
});

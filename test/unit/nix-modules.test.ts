/**
 * The Nix modules evaluated without nixpkgs (nix/tests/module-harness.nix stands in for the few lib
 * functions they use): option names, types and defaults, the generated JSON configs validated by
 * the very zod schemas the agent, self-update and hub load, and the systemd/launchd units.
 */
import { describe, it, expect } from "vitest";
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { join } from "node:path";
import { parseAgentConfig } from "../../agent/config.js";
import { parseSelfUpdateConfig } from "../../agent/self-update/config.js";
import { HubSettingsSchema } from "../../hub/config.js";
import { parseBrokerConfig } from "../../broker/config.js";
import { nixEnv } from "../fleet/nix-env.js";

const ROOT = join(__dirname, "..", "..");

function evalNix<T = unknown>(expr: string): T {
  const out = execFileSync("nix-instantiate", ["--eval", "--strict", "--json", "-E", expr], { cwd: ROOT, env: nixEnv(), encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
  return JSON.parse(out) as T;
}

function evalNixError(expr: string): string {
  try {
    evalNix(expr);
  } catch (e) {
    return String((e as { stderr?: string }).stderr ?? e);
  }
  throw new Error("expected the evaluation to fail");
}

interface Harness {
  options: Array<{ name: string; type: string; elem: string | null; hasDescription: boolean }>;
  cfg: Record<string, unknown>;
  config: any; // eslint-disable-line @typescript-eslint/no-explicit-any
}

interface HarnessExtra {
  hostConfig?: object;
  isDarwin?: boolean;
  /** What further modules write under services.<name>, merged with `settings` by option type. */
  moreSettings?: object[];
  /** Home Manager inside NixOS / nix-darwin: the system's config. */
  osConfig?: object;
}

/** A value handed to Nix as JSON: builtins.fromJSON turns it into a Nix value. */
const nixJson = (v: unknown) => `builtins.fromJSON ${JSON.stringify(JSON.stringify(v))}`;

function harness(module: string, name: string, settings: object, extra: HarnessExtra = {}): Harness {
  const args = [
    `module = ./nix/modules/${module}`,
    `name = "${name}"`,
    `settings = ${nixJson(settings)}`,
    `moreSettings = ${nixJson(extra.moreSettings ?? [])}`,
    `hostConfig = ${nixJson(extra.hostConfig ?? {})}`,
    `isDarwin = ${extra.isDarwin ? "true" : "false"}`,
    ...(extra.osConfig ? [`osConfig = ${nixJson(extra.osConfig)}`] : []),
  ].join("; ");
  return evalNix<Harness>(`import ./nix/tests/module-harness.nix { ${args}; }`);
}

const agentBase = { enable: true, brokerUrl: "mqtts://hub.lan:8883", repo: { url: "git@github.com:acme/fleet.git" } };
const failedAssertions = (h: Harness): string[] => h.config.assertions.filter((a: { assertion: boolean }) => !a.assertion).map((a: { message: string }) => a.message);

describe("nix/lib.nix", () => {
  it("staggers hosts by a stable offset from the host name (same formula as sha256 here)", () => {
    const offset = (host: string, spread: number) => parseInt(createHash("sha256").update(host).digest("hex").slice(0, 7), 16) % spread;
    const hosts = ["alpha", "beta", "gamma", "web-01"];
    const nix = evalNix<number[]>(`map (h: (import ./nix/lib.nix).hostOffsetMinutes h 60) ${JSON.stringify(hosts).replaceAll(",", " ")}`);
    expect(nix).toEqual(hosts.map((h) => offset(h, 60)));
    expect(new Set(nix).size).toBeGreaterThan(1);
    const cal = evalNix<string[]>(`let l = import ./nix/lib.nix; in [ (l.onCalendar { time = "03:00"; host = "alpha"; spreadMinutes = 60; }) (l.onCalendar { time = "23:50"; host = "alpha"; spreadMinutes = 60; days = [ "sat" "sun" ]; }) (l.onCalendar { time = "03:00"; host = "alpha"; }) ]`);
    const a = offset("alpha", 60);
    const pad = (n: number) => String(n).padStart(2, "0");
    expect(cal[0]).toBe(`*-*-* 03:${pad(a)}:00`);
    const late = (23 * 60 + 50 + a) % 1440;
    expect(cal[1]).toBe(`Sat,Sun *-*-* ${pad(Math.floor(late / 60))}:${pad(late % 60)}:00`);
    expect(cal[2]).toBe("*-*-* 03:00:00");
    expect(evalNixError(`(import ./nix/lib.nix).onCalendar { time = "3am"; host = "a"; }`)).toContain("must be HH:MM");
  });

  it("recognises store paths and host ids", () => {
    expect(evalNix(`let l = import ./nix/lib.nix; in map l.isStorePath [ "/nix/store/abc-secret" "/nix/store" "/nix/storefront" "/run/secrets/x" ]`)).toEqual([true, true, false, false]);
    expect(evalNix(`let l = import ./nix/lib.nix; in map l.isValidHostId [ "web-01" "Web" "" "a_b" ]`)).toEqual([true, false, false, true]);
  });
});

describe("services.lockstep-agent (NixOS)", () => {
  const h = harness("nixos-agent.nix", "lockstep-agent", { ...agentBase, credentialsFile: "/run/secrets/mqtt", tags: ["edge"], canary: true, maintenanceWindow: { days: ["sat"], start: "02:00", end: "05:00", timeZone: "Europe/Berlin" }, settings: { timeouts: { switchSeconds: 7200 } }, selfUpdate: { enable: true, reboot: { window: { start: "03:00", end: "05:00" } } } });

  it("declares every documented option, each with a description", () => {
    const names = h.options.map((o) => o.name).sort();
    expect(names).toEqual(
      [
        "enable", "package", "brokerUrl", "brokerUsername", "credentialsFile", "brokerCaFile", "hostName", "topicPrefix",
        "repo.url", "repo.branch", "repo.checkoutDir", "sshKeyFile", "profile", "flakeAttr", "systemProfile", "testsDir",
        "tags", "location", "priority", "canary", "hold", "maintenanceWindow", "logLevel", "settings", "extraConfig",
        "selfUpdate.enable", "selfUpdate.mode", "selfUpdate.inputs", "selfUpdate.commitLock", "selfUpdate.attribute",
        "selfUpdate.time", "selfUpdate.days", "selfUpdate.spreadMinutes", "selfUpdate.randomizedDelaySec", "selfUpdate.persistent",
        "selfUpdate.reportToHub", "selfUpdate.health.maxDiskUsedPercent", "selfUpdate.health.diskPath", "selfUpdate.health.systemStates",
        "selfUpdate.health.requiredUnits", "selfUpdate.health.minUptimeSeconds", "selfUpdate.reboot.enable", "selfUpdate.reboot.command",
        "selfUpdate.reboot.window", "selfUpdate.settings", "selfUpdate.extraConfig",
      ].sort(),
    );
    expect(h.options.filter((o) => !o.hasDescription)).toEqual([]);
    // Secrets are strings, never Nix path literals (which would be copied into the store).
    for (const secret of ["credentialsFile", "sshKeyFile"]) expect(h.options.find((o) => o.name === secret)).toMatchObject({ type: "nullOr", elem: "str" });
    // RFC 42: freeform settings of the JSON format's type; the old extraConfig stays a (shallow) attrs.
    expect(h.options.filter((o) => o.name.endsWith("settings")).map((o) => o.type)).toEqual(["json", "json"]);
  });

  it("has the documented defaults", () => {
    expect(h.cfg).toMatchObject({ profile: "nixos", hostName: "alpha", priority: 100, hold: false, logLevel: "info", testsDir: "tests", topicPrefix: "lockstep" });
    expect(h.cfg.repo).toEqual({ url: agentBase.repo.url, branch: "main", checkoutDir: "/var/lib/lockstep-agent/checkout" });
    expect(h.cfg.selfUpdate).toMatchObject({ mode: "flake-update", time: "03:00", spreadMinutes: 60, persistent: true, health: { maxDiskUsedPercent: 90, systemStates: ["running", "degraded"], requiredUnits: [], minUptimeSeconds: 0 } });
  });

  it("merges settings from several modules deeply, and keeps extraConfig as a deprecated, shallow alias", () => {
    const two = harness("nixos-agent.nix", "lockstep-agent", { ...agentBase, settings: { timeouts: { switchSeconds: 7200 } } }, { moreSettings: [{ settings: { timeouts: { testSeconds: 900 } }, selfUpdate: { enable: true, settings: { env: { A: "1" } } } }, { selfUpdate: { settings: { env: { B: "2" } } } }] });
    const agent = parseAgentConfig(JSON.parse(two.config.environment.etc["lockstep/agent.json"].source.text));
    expect(agent.timeouts).toMatchObject({ switchSeconds: 7200, testSeconds: 900 });
    expect(parseSelfUpdateConfig(JSON.parse(two.config.environment.etc["lockstep/self-update.json"].source.text)).env).toEqual({ A: "1", B: "2" });
    expect(two.config.warnings).toEqual([]);
    // Two modules giving one leaf different values is an error, as in the module system.
    expect(() => harness("nixos-agent.nix", "lockstep-agent", { ...agentBase, settings: { timeouts: { switchSeconds: 1 } } }, { moreSettings: [{ settings: { timeouts: { switchSeconds: 2 } } }] })).toThrow(/conflicting definitions/);
    // extraConfig (types.attrs): the last module's `timeouts` replaces the first's -- why it is deprecated.
    const old = harness("nixos-agent.nix", "lockstep-agent", { ...agentBase, extraConfig: { timeouts: { switchSeconds: 7200 } } }, { moreSettings: [{ extraConfig: { timeouts: { testSeconds: 900 } } }] });
    const oldAgent = JSON.parse(old.config.environment.etc["lockstep/agent.json"].source.text);
    expect(oldAgent.timeouts).toEqual({ testSeconds: 900 });
    expect(old.config.warnings).toEqual([expect.stringContaining("extraConfig is deprecated: use services.lockstep-agent.settings")]);
  });

  it("lets the persistent timer's catch-up run at boot and does not skip for unrelated failed units", () => {
    const su = parseSelfUpdateConfig(JSON.parse(h.config.environment.etc["lockstep/self-update.json"].source.text));
    expect(h.config.systemd.timers["lockstep-self-update"].timerConfig.Persistent).toBe(true);
    // The catch-up happens right after boot: no minimum uptime by default.
    expect(su.health.uptime.enabled).toBe(false);
    // A degraded system (some unit failed) goes ahead; the run reports the failed units and stops only for required ones.
    expect(su.health.systemState).toMatchObject({ enabled: true, accepted: ["running", "degraded"] });
    expect(su.health.failedUnits).toEqual({ enabled: true, argv: ["systemctl", "list-units", "--state=failed", "--plain", "--no-legend", "--no-pager"], required: [] });
    const strict = harness("nixos-agent.nix", "lockstep-agent", { ...agentBase, selfUpdate: { enable: true, health: { requiredUnits: ["nix-daemon.service"], minUptimeSeconds: 600 } } });
    expect(parseSelfUpdateConfig(JSON.parse(strict.config.environment.etc["lockstep/self-update.json"].source.text)).health).toMatchObject({ failedUnits: { required: ["nix-daemon.service"] }, uptime: { enabled: true, minSeconds: 600 } });
    expect(strict.config.warnings).toEqual([expect.stringContaining("health.minUptimeSeconds = 600 skips it")]);
  });

  it("writes an agent config the agent accepts", () => {
    const text = h.config.environment.etc["lockstep/agent.json"].source.text as string;
    const agent = parseAgentConfig(JSON.parse(text));
    expect(agent).toMatchObject({
      host: "alpha",
      broker: { url: "mqtts://hub.lan:8883", passwordFile: "/run/secrets/mqtt" },
      repo: { url: agentBase.repo.url, branch: "main", checkoutDir: "/var/lib/lockstep-agent/checkout" },
      stateDir: "/var/lib/lockstep-agent",
      os: { kind: "nixos" },
      tags: ["edge"],
      canary: true,
      maintenanceWindow: { days: ["sat"], start: "02:00", end: "05:00", timeZone: "Europe/Berlin" },
      timeouts: { switchSeconds: 7200 },
    });
    expect(agent.broker.username).toBeUndefined(); // the agent defaults it to the host id
  });

  it("points the agent's selfCheck at the installed agent, so it restarts into a new one after a switch", () => {
    const agent = parseAgentConfig(JSON.parse(h.config.environment.etc["lockstep/agent.json"].source.text));
    expect(agent.selfCheck.path).toBe("/run/current-system/sw/bin/lockstep-agent");
    expect(agent.restartAfterSwitch).toBe("if-changed");
  });

  it("writes a self-update config the self-update accepts", () => {
    const su = parseSelfUpdateConfig(JSON.parse(h.config.environment.etc["lockstep/self-update.json"].source.text));
    expect(su).toMatchObject({
      host: "alpha",
      checkoutDir: "/var/lib/lockstep-agent/checkout",
      repoUrl: agentBase.repo.url,
      profile: "nixos",
      broker: { url: "mqtts://hub.lan:8883", passwordFile: "/run/secrets/mqtt" },
      reboot: { enabled: true, window: { start: "03:00", end: "05:00", timeZone: "UTC" } },
      health: { disk: { enabled: true, maxUsedPercent: 90 }, systemState: { enabled: true, accepted: ["running", "degraded"] }, uptime: { enabled: false, minSeconds: 0, uptimeFile: null } },
      nextRunArgv: ["systemctl", "show", "lockstep-self-update.timer", "-p", "NextElapseUSecRealtime"],
    });
  });

  it("runs the agent as a unit the switch neither restarts nor stops, with a state dir", () => {
    const unit = h.config.systemd.services["lockstep-agent"];
    expect(unit.restartIfChanged).toBe(false);
    expect(unit.stopIfChanged).toBe(false);
    expect(unit.wantedBy).toEqual(["multi-user.target"]);
    expect(unit.serviceConfig).toMatchObject({ KillMode: "process", Restart: "on-failure", StateDirectory: "lockstep-agent", StateDirectoryMode: "0700", UMask: "0077", PrivateTmp: true });
    expect(unit.serviceConfig.ExecStart).toMatch(/-lockstep-0\.1\.0\/bin\/lockstep-agent run --config \/etc\/lockstep\/agent\.json$/);
    expect(unit.serviceConfig.ProtectSystem).toBeUndefined(); // would break activation (see the module)
    expect(h.config.assertions.every((a: { assertion: boolean }) => a.assertion)).toBe(true);
  });

  it("exposes the self-update as a staggered, persistent timer", () => {
    const offset = parseInt(createHash("sha256").update("alpha").digest("hex").slice(0, 7), 16) % 60;
    expect(h.config.systemd.timers["lockstep-self-update"].timerConfig).toEqual({ OnCalendar: `*-*-* 03:${String(offset).padStart(2, "0")}:00`, Persistent: true });
    const svc = h.config.systemd.services["lockstep-self-update"];
    // Restarted only when killed by a signal: a run killed while its switch awaited confirmation is finished by the next.
    expect(svc).toMatchObject({ restartIfChanged: false, stopIfChanged: false, serviceConfig: { Type: "oneshot", SuccessExitStatus: "4", Restart: "on-abnormal" } });
    expect(svc.serviceConfig.ExecStart).toMatch(/bin\/lockstep-agent self-update --config \/etc\/lockstep\/self-update\.json$/);
    // Boot rollback: a check once per boot, after the boot (a timer), counting the agent's own start.
    expect(h.config.systemd.timers["lockstep-boot-check"]).toMatchObject({ wantedBy: ["timers.target"], timerConfig: { OnBootSec: "30s" } });
    const boot = h.config.systemd.services["lockstep-boot-check"];
    expect(boot).toMatchObject({ restartIfChanged: false, stopIfChanged: false, serviceConfig: { Type: "oneshot" } });
    expect(boot.wantedBy ?? []).toEqual([]);
    expect(boot.serviceConfig.ExecStart).toMatch(/bin\/lockstep-agent boot-check --config \/etc\/lockstep\/self-update\.json$/);
    expect(JSON.parse(h.config.environment.etc["lockstep/self-update.json"].source.text).bootCheck).toEqual({ activeUnits: ["lockstep-agent.service"] });
    const jittered = harness("nixos-agent.nix", "lockstep-agent", { selfUpdate: { enable: true, randomizedDelaySec: 300, days: ["sun"] }, repo: { url: "x" } }, { hostConfig: { networking: { hostName: "beta" } } });
    expect(JSON.parse(jittered.config.environment.etc["lockstep/self-update.json"].source.text).bootCheck).toEqual({ activeUnits: [] });
    expect(jittered.config.systemd.timers["lockstep-self-update"].timerConfig).toMatchObject({ RandomizedDelaySec: 300, OnCalendar: expect.stringMatching(/^Sun \*-\*-\* 03:\d\d:00$/) });
    // Self-update alone (a home lab without hub): no agent daemon, no broker needed.
    expect(jittered.config.systemd.services["lockstep-agent"]).toBeUndefined();
    expect(JSON.parse(jittered.config.environment.etc["lockstep/self-update.json"].source.text).broker).toBeUndefined();
  });

  it("refuses secrets in the Nix store, a missing broker, and bad host names", () => {
    const failing = (settings: object, hostConfig = {}) =>
      harness("nixos-agent.nix", "lockstep-agent", settings, { hostConfig }).config.assertions.filter((a: { assertion: boolean }) => !a.assertion).map((a: { message: string }) => a.message);
    expect(failing({ ...agentBase, credentialsFile: "/nix/store/abc-mqtt-password" })).toEqual([expect.stringContaining("must not be in the Nix store")]);
    expect(failing({ ...agentBase, sshKeyFile: "relative/key" })).toEqual([expect.stringContaining("absolute paths")]);
    expect(failing({ enable: true, repo: { url: "x" } })).toEqual([expect.stringContaining("brokerUrl must be set")]);
    expect(failing(agentBase, { networking: { hostName: "my.laptop" } })).toEqual([expect.stringContaining("not a valid host id")]);
    // NixOS allows capitals in networking.hostName; host ids are lowercase: the message says what to set.
    expect(failing(agentBase, { networking: { hostName: "WebServer" } })).toEqual([
      'services.lockstep-agent.hostName "WebServer" is not a valid host id: use 1-63 characters of a-z, 0-9, \'-\' and \'_\'. Host ids are lowercase: set services.lockstep-agent.hostName = "webserver" (and flakeAttr = "WebServer" if your configuration is named that way).',
    ]);
  });

  it("rejects values of the wrong type and unknown options", () => {
    expect(() => harness("nixos-agent.nix", "lockstep-agent", { ...agentBase, profile: "darwin" })).toThrow(/services\.lockstep-agent\.profile/);
    expect(() => harness("nixos-agent.nix", "lockstep-agent", { ...agentBase, brokerUrl: "http://hub" })).toThrow(/brokerUrl/);
    expect(() => harness("nixos-agent.nix", "lockstep-agent", { ...agentBase, brokerURL: "mqtt://x" })).toThrow(/has no option\(s\) brokerURL/);
  });
});

describe("services.lockstep-hub (NixOS)", () => {
  const h = harness("nixos-hub.nix", "lockstep-hub", {
    enable: true,
    openFirewall: true,
    tls: { certFile: "/var/lib/acme/hub/cert.pem", keyFile: "/var/lib/acme/hub/key.pem" },
    github: { owner: "acme", repo: "fleet", tokenFile: "/run/secrets/gh-token", webhookSecretFile: "/run/secrets/gh-webhook" },
    listeners: { http: { port: 8080 } },
  });

  it("writes a hub config the hub and its broker accept, with secrets from systemd credentials", () => {
    const json = JSON.parse(h.config.environment.etc["lockstep/hub.json"].source.text);
    const settings = HubSettingsSchema.parse(json);
    expect(settings).toMatchObject({ dataDir: "/var/lib/lockstep", http: { host: "0.0.0.0", port: 8080 }, github: { owner: "acme", repo: "fleet", baseBranch: "main", tokenFile: "/run/credentials/lockstep-hub.service/github-token", webhookSecretFile: "/run/credentials/lockstep-hub.service/github-webhook-secret" } });
    const broker = parseBrokerConfig({ dataDir: settings.dataDir, ...settings.broker });
    // With TLS on, the plaintext listener serves only this host (the hub connects to it itself).
    expect(broker.listeners.tcp).toEqual({ host: "127.0.0.1", port: 1883 });
    expect(broker.listeners.tls).toMatchObject({ host: "0.0.0.0", port: 8883, certFile: "/run/credentials/lockstep-hub.service/tls-cert", keyFile: "/run/credentials/lockstep-hub.service/tls-key" });
    expect(h.config.systemd.services["lockstep-hub"].serviceConfig.LoadCredential.sort()).toEqual(
      ["github-token:/run/secrets/gh-token", "github-webhook-secret:/run/secrets/gh-webhook", "tls-cert:/var/lib/acme/hub/cert.pem", "tls-key:/var/lib/acme/hub/key.pem"].sort(),
    );
  });

  it("runs unprivileged and hardened, and opens exactly its ports", () => {
    const sc = h.config.systemd.services["lockstep-hub"].serviceConfig;
    expect(h.config.users.users["lockstep-hub"]).toMatchObject({ isSystemUser: true, group: "lockstep-hub" });
    expect(sc).toMatchObject({ User: "lockstep-hub", StateDirectory: "lockstep", ProtectSystem: "strict", NoNewPrivileges: true, CapabilityBoundingSet: [], AmbientCapabilities: [] });
    // TLS only: 1883 stays closed.
    expect(h.config.networking.firewall.allowedTCPPorts).toEqual([8080, 8883]);
    const plain = harness("nixos-hub.nix", "lockstep-hub", { enable: true, openFirewall: true });
    expect(plain.config.networking.firewall.allowedTCPPorts).toEqual([1880, 1883]);
    // Both MQTT listeners reachable when the admin binds the plaintext one to all addresses again.
    const both = harness("nixos-hub.nix", "lockstep-hub", { enable: true, openFirewall: true, tls: { certFile: "/run/secrets/c", keyFile: "/run/secrets/k" }, listeners: { mqtt: { host: "::" } } });
    expect(both.config.networking.firewall.allowedTCPPorts).toEqual([1880, 1883, 8883]);
    expect(harness("nixos-hub.nix", "lockstep-hub", { enable: true }).config.networking.firewall.allowedTCPPorts).toBeUndefined();
    const external = harness("nixos-hub.nix", "lockstep-hub", { enable: true, openFirewall: true, externalBroker: { url: "mqtts://mosquitto.lan:8883", passwordFile: "/run/secrets/hub-mqtt" }, listeners: { http: { port: 80 } } });
    expect(external.config.networking.firewall.allowedTCPPorts).toEqual([80]);
    expect(external.config.systemd.services["lockstep-hub"].serviceConfig.AmbientCapabilities).toEqual(["CAP_NET_BIND_SERVICE"]);
    // A data dir outside /var/lib is no StateDirectory; it is made writable instead.
    const elsewhere = harness("nixos-hub.nix", "lockstep-hub", { enable: true, dataDir: "/srv/lockstep" }).config.systemd;
    expect(elsewhere.services["lockstep-hub"].serviceConfig.StateDirectory).toBeUndefined();
    expect(elsewhere.services["lockstep-hub"].serviceConfig.ReadWritePaths).toEqual(["/srv/lockstep"]);
    expect(elsewhere.tmpfiles.rules).toEqual(["d /srv/lockstep 0700 lockstep-hub lockstep-hub - -"]);
    expect(h.config.systemd.tmpfiles.rules).toEqual([]);
    const ext = HubSettingsSchema.parse(JSON.parse(external.config.environment.etc["lockstep/hub.json"].source.text));
    expect(parseBrokerConfig({ dataDir: "/x", ...ext.broker }).external).toEqual({ url: "mqtts://mosquitto.lan:8883", username: "lockstep-hub", passwordFile: "/run/credentials/lockstep-hub.service/external-broker-password" });
  });

  it("merges settings from several modules deeply", () => {
    const two = harness("nixos-hub.nix", "lockstep-hub", { enable: true, settings: { broker: { allowAnonymous: false } } }, { moreSettings: [{ settings: { broker: { haPrefix: "ha" } } }] });
    const json = JSON.parse(two.config.environment.etc["lockstep/hub.json"].source.text);
    const broker = parseBrokerConfig({ dataDir: "/x", ...HubSettingsSchema.parse(json).broker });
    expect(broker).toMatchObject({ allowAnonymous: false, haPrefix: "ha", topicPrefix: "lockstep", listeners: { tcp: { host: "0.0.0.0", port: 1883 } } });
    expect(two.config.warnings).toEqual([]);
  });

  it("refuses secrets in the store and half-configured TLS", () => {
    const bad = harness("nixos-hub.nix", "lockstep-hub", { enable: true, tls: { certFile: "/nix/store/abc-cert.pem" }, github: { repo: "fleet" } });
    expect(bad.config.assertions.filter((a: { assertion: boolean }) => !a.assertion).map((a: { message: string }) => a.message)).toEqual([
      expect.stringContaining("outside the Nix store"),
      expect.stringContaining("certFile and keyFile together"),
      expect.stringContaining("owner and repo together"),
    ]);
  });
});

describe("services.lockstep-agent (nix-darwin)", () => {
  const h = harness("darwin-agent.nix", "lockstep-agent", { ...agentBase, selfUpdate: { enable: true, days: ["sat"] } }, { hostConfig: { networking: { hostName: "MacMini" } } });

  it("runs the agent from the stable system path with KeepAlive, so the new version starts after a switch", () => {
    const sc = h.config.launchd.daemons["lockstep-agent"].serviceConfig;
    expect(sc.ProgramArguments).toEqual(["/run/current-system/sw/bin/lockstep-agent", "run", "--config", "/etc/lockstep/agent.json"]);
    expect(sc).toMatchObject({ KeepAlive: true, RunAtLoad: true });
    const agent = parseAgentConfig(JSON.parse(h.config.environment.etc["lockstep/agent.json"].source.text));
    expect(agent).toMatchObject({ host: "macmini", os: { kind: "darwin" } });
  });

  it("points the agent's selfCheck at the stable path launchd starts", () => {
    const agent = parseAgentConfig(JSON.parse(h.config.environment.etc["lockstep/agent.json"].source.text));
    expect(agent.selfCheck.path).toBe(h.config.launchd.daemons["lockstep-agent"].serviceConfig.ProgramArguments[0]);
  });

  it("asks for hostName when nix-darwin has no networking.hostName", () => {
    const unnamed = harness("darwin-agent.nix", "lockstep-agent", agentBase, { hostConfig: { networking: { hostName: null } } });
    expect(failedAssertions(unnamed)).toEqual([expect.stringMatching(/hostName "" is not a valid host id.*Set services\.lockstep-agent\.hostName/)]);
  });

  it("schedules the self-update with launchd and no Linux-only checks", () => {
    const sc = h.config.launchd.daemons["lockstep-self-update"].serviceConfig;
    expect(sc.StartCalendarInterval).toEqual([{ Hour: 3, Minute: parseInt(createHash("sha256").update("macmini").digest("hex").slice(0, 7), 16) % 60, Weekday: 6 }]);
    const su = parseSelfUpdateConfig(JSON.parse(h.config.environment.etc["lockstep/self-update.json"].source.text));
    expect(su).toMatchObject({ profile: "darwin", reboot: { enabled: false }, health: { systemState: { enabled: false }, failedUnits: { enabled: false }, uptime: { enabled: false } } });
    // launchd cannot be asked for the next run: status must not call systemctl on macOS.
    expect(su.nextRunArgv).toBeNull();
  });

  it("logs to /var/log/lockstep, created by the activation and rotated by newsyslog", () => {
    const daemons = h.config.launchd.daemons;
    expect(daemons["lockstep-agent"].serviceConfig).toMatchObject({ StandardOutPath: "/var/log/lockstep/agent.log", StandardErrorPath: "/var/log/lockstep/agent.log" });
    expect(daemons["lockstep-self-update"].serviceConfig).toMatchObject({ StandardOutPath: "/var/log/lockstep/self-update.log", StandardErrorPath: "/var/log/lockstep/self-update.log" });
    expect(h.config.system.activationScripts.postActivation.text).toContain("mkdir -p /var/lib/lockstep-agent /var/log/lockstep");
    const conf = (h.config.environment.etc["newsyslog.d/lockstep.conf"].text as string).split("\n").filter((l) => l && !l.startsWith("#"));
    // newsyslog.conf(5): logfilename mode count size(KiB) when flags -- every log file launchd writes, and nothing else.
    expect(conf.map((l) => l.split("\t"))).toEqual([
      ["/var/log/lockstep/agent.log", "640", "5", "10240", "*", "NZ"],
      ["/var/log/lockstep/self-update.log", "640", "5", "10240", "*", "NZ"],
    ]);
    const onlySelfUpdate = harness("darwin-agent.nix", "lockstep-agent", { repo: agentBase.repo, selfUpdate: { enable: true } }, { hostConfig: { networking: { hostName: "mini" } } });
    expect(onlySelfUpdate.config.environment.etc["newsyslog.d/lockstep.conf"].text).not.toContain("agent.log");
  });
});

describe("services.lockstep-agent (Home Manager)", () => {
  it("runs as a user service that Home Manager's switch does not restart", () => {
    const h = harness("home-manager-agent.nix", "lockstep-agent", { ...agentBase, hostName: "alice-laptop", selfUpdate: { enable: true } });
    const unit = h.config.systemd.user.services["lockstep-agent"];
    expect(unit.Unit["X-RestartIfChanged"]).toBe(false);
    expect(unit.Service.ExecStart).toBe("/home/alice/.nix-profile/bin/lockstep-agent run --config /home/alice/.config/lockstep/agent.json");
    const agent = parseAgentConfig(JSON.parse(h.config.xdg.configFile["lockstep/agent.json"].source.text));
    expect(agent).toMatchObject({ host: "alice-laptop", os: { kind: "home-manager", profile: "/home/alice/.local/state/nix/profiles/home-manager" }, stateDir: "/home/alice/.local/state/lockstep-agent" });
    expect(h.config.systemd.user.timers["lockstep-self-update"].Timer.Persistent).toBe(true);
    const su = parseSelfUpdateConfig(JSON.parse(h.config.xdg.configFile["lockstep/self-update.json"].source.text));
    expect(su).toMatchObject({ profile: "home-manager", systemProfile: "/home/alice/.local/state/nix/profiles/home-manager", reboot: { enabled: false } });
    expect(su.nextRunArgv).toEqual(["systemctl", "--user", "show", "lockstep-self-update.timer", "-p", "NextElapseUSecRealtime"]);
    expect(su.health.failedUnits).toMatchObject({ enabled: true, argv: expect.arrayContaining(["--user"]) });
  });

  it("points the agent's selfCheck at the user's profile, overridable through extraConfig", () => {
    const h = harness("home-manager-agent.nix", "lockstep-agent", { ...agentBase, hostName: "alice-laptop" });
    expect(parseAgentConfig(JSON.parse(h.config.xdg.configFile["lockstep/agent.json"].source.text)).selfCheck.path).toBe("/home/alice/.nix-profile/bin/lockstep-agent");
    const own = harness("home-manager-agent.nix", "lockstep-agent", { ...agentBase, hostName: "alice-laptop", settings: { selfCheck: { path: "/opt/agent" } } });
    expect(parseAgentConfig(JSON.parse(own.config.xdg.configFile["lockstep/agent.json"].source.text)).selfCheck.path).toBe("/opt/agent");
  });

  it("uses launchd agents on macOS, logging to ~/Library/Logs/lockstep, which the activation creates", () => {
    const h = harness("home-manager-agent.nix", "lockstep-agent", { ...agentBase, hostName: "alice-mac", selfUpdate: { enable: true, days: ["sun"] } }, { isDarwin: true });
    expect(h.config.launchd.agents["lockstep-agent"].config).toMatchObject({ KeepAlive: true, ProgramArguments: ["/home/alice/.nix-profile/bin/lockstep-agent", "run", "--config", "/home/alice/.config/lockstep/agent.json"] });
    expect(h.config.systemd).toBeUndefined();
    const logs = "/home/alice/Library/Logs/lockstep";
    expect(h.config.launchd.agents["lockstep-agent"].config).toMatchObject({ StandardOutPath: `${logs}/agent.log`, StandardErrorPath: `${logs}/agent.log` });
    const selfUpdate = h.config.launchd.agents["lockstep-self-update"].config;
    expect(selfUpdate).toMatchObject({ StandardOutPath: `${logs}/self-update.log`, StandardErrorPath: `${logs}/self-update.log` });
    expect(selfUpdate.StartCalendarInterval).toEqual([{ Hour: 3, Minute: parseInt(createHash("sha256").update("alice-mac").digest("hex").slice(0, 7), 16) % 60, Weekday: 0 }]);
    expect(h.config.home.activation.lockstepLogDir).toEqual({ after: ["writeBoundary"], data: `run mkdir -p ${logs}\n` });
    const su = parseSelfUpdateConfig(JSON.parse(h.config.xdg.configFile["lockstep/self-update.json"].source.text));
    expect(su.nextRunArgv).toBeNull();
    expect(su.health).toMatchObject({ systemState: { enabled: false }, failedUnits: { enabled: false }, uptime: { enabled: false } });
  });

  it("defaults the host id to <user>-<hostname>, lowercased, and says what to set where it cannot", () => {
    const base = { ...agentBase };
    const inNixos = harness("home-manager-agent.nix", "lockstep-agent", base, { osConfig: { networking: { hostName: "Laptop" } } });
    expect(inNixos.cfg.hostName).toBe("alice-laptop");
    expect(parseAgentConfig(JSON.parse(inNixos.config.xdg.configFile["lockstep/agent.json"].source.text)).host).toBe("alice-laptop");
    expect(failedAssertions(inNixos)).toEqual([]);
    // Standalone Home Manager has no host name to read.
    const standalone = harness("home-manager-agent.nix", "lockstep-agent", base);
    expect(failedAssertions(standalone)).toEqual([
      'services.lockstep-agent.hostName "" is not a valid host id: use 1-63 characters of a-z, 0-9, \'-\' and \'_\'. Home Manager cannot see this machine\'s host name here (standalone, or no networking.hostName): set services.lockstep-agent.hostName, e.g. "alice-laptop".',
    ]);
    const dotted = harness("home-manager-agent.nix", "lockstep-agent", base, { osConfig: { networking: { hostName: "mac.local" } } });
    expect(failedAssertions(dotted)).toEqual([expect.stringContaining('"alice-mac.local" is not a valid host id')]);
  });
});

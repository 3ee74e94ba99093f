/** The self-update's building blocks on real files and processes: window, reboot need, health, status CLI. */
import { describe, it, expect, afterAll, vi } from "vitest";
import { mkdtempSync, mkdirSync, writeFileSync, symlinkSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { isWithinWindow } from "../../protocol/windows.js";
import { rebootNeeded } from "../../agent/self-update/system.js";
import { readProfile } from "../../agent/profile.js";
import { checkDisk, checkSystemState, checkUptime } from "../../agent/self-update/health.js";
import { runSelfUpdateCli } from "../../agent/self-update/cli.js";
import { appendRunRecord, type RunRecord } from "../../agent/self-update/runlog.js";
import { parseSelfUpdateConfig, profileCommands } from "../../agent/self-update/config.js";
import { expandArgv } from "../../agent/os-profiles.js";
import { acquireSelfUpdateLock } from "../../agent/self-update/lock.js";
import { MaintenanceWindow } from "../../protocol/index.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-selfupdate-parts-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("reboot window", () => {
  const w = (o: object) => MaintenanceWindow.parse(o);
  it("handles days, ranges, midnight crossing and time zones", () => {
    const sat0300 = w({ days: ["sat"], start: "03:00", end: "04:00" });
    expect(isWithinWindow(sat0300, new Date("2026-11-21T03:00:00Z"))).toBe(true); // a Saturday
    expect(isWithinWindow(sat0300, new Date("2026-11-21T04:00:00Z"))).toBe(false);
    expect(isWithinWindow(sat0300, new Date("2026-11-22T03:30:00Z"))).toBe(false); // Sunday
    const overnight = w({ days: ["sat"], start: "23:00", end: "02:00" });
    expect(isWithinWindow(overnight, new Date("2026-11-21T23:30:00Z"))).toBe(true);
    expect(isWithinWindow(overnight, new Date("2026-11-22T01:59:00Z"))).toBe(true); // Sunday morning, Saturday's window
    expect(isWithinWindow(overnight, new Date("2026-11-21T01:00:00Z"))).toBe(false); // Saturday morning is Friday's window
    const berlin = w({ days: ["sat"], start: "03:00", end: "04:00", timeZone: "Europe/Berlin" });
    expect(isWithinWindow(berlin, new Date("2026-11-21T02:30:00Z"))).toBe(true); // 03:30 in Berlin (CET)
    expect(isWithinWindow(berlin, new Date("2026-11-21T03:30:00Z"))).toBe(false);
  });
});

describe("reboot need", () => {
  it("compares kernel, initrd and modules by store path", async () => {
    const mk = (name: string, links: Record<string, string>) => {
      const p = join(dir, name);
      mkdirSync(p);
      for (const [c, target] of Object.entries(links)) symlinkSync(target, join(p, c));
      return p;
    };
    for (const f of ["k1", "k2", "i1", "m1"]) writeFileSync(join(dir, f), f);
    const booted = mk("booted", { kernel: join(dir, "k1"), initrd: join(dir, "i1"), "kernel-modules": join(dir, "m1") });
    const same = mk("same", { kernel: join(dir, "k1"), initrd: join(dir, "i1"), "kernel-modules": join(dir, "m1") });
    const newKernel = mk("new-kernel", { kernel: join(dir, "k2"), initrd: join(dir, "i1"), "kernel-modules": join(dir, "m1") });
    const components = ["kernel", "initrd", "kernel-modules"];
    expect(await rebootNeeded(booted, same, components)).toEqual({ needed: false, changed: [] });
    expect(await rebootNeeded(booted, newKernel, components)).toEqual({ needed: true, changed: ["kernel"] });
    // The booted system reached through a symlink (like /run/booted-system) resolves the same way.
    symlinkSync(booted, join(dir, "booted-link"));
    expect(await rebootNeeded(join(dir, "booted-link"), newKernel, components)).toEqual({ needed: true, changed: ["kernel"] });
  });

  it("reads the generation from a profile link", async () => {
    symlinkSync("system-42-link", join(dir, "system"));
    expect(readProfile(join(dir, "system")).generation).toBe(42);
    expect(readProfile(join(dir, "no-such-profile")).generation).toBeUndefined();
  });
});

describe("health checks", () => {
  it("measures disk usage with statfs against the threshold", async () => {
    expect((await checkDisk(dir, 100)).ok).toBe(true);
    const strict = await checkDisk(dir, 1);
    const percent = Number(/is ([\d.]+)% used \(limit 1%\)/.exec(strict.detail)?.[1]);
    expect(percent).toBeGreaterThanOrEqual(0);
    expect(strict.ok).toBe(percent <= 1);
    expect((await checkDisk(join(dir, "missing"), 90)).ok).toBe(false);
  });

  it("accepts only the configured systemd states and validates the output", async () => {
    expect(await checkSystemState(["echo", "degraded"], ["running", "degraded"])).toMatchObject({ ok: true });
    expect(await checkSystemState(["echo", "degraded"], ["running"])).toMatchObject({ ok: false });
    expect(await checkSystemState(["echo", "Not A State!"], ["running"])).toMatchObject({ ok: false, detail: expect.stringContaining("printed no state") });
    expect(await checkSystemState(["/nonexistent/systemctl"], ["running"])).toMatchObject({ ok: false, detail: expect.stringContaining("could not be started") });
  });

  it("parses /proc/uptime and enforces the minimum", async () => {
    const f = join(dir, "uptime");
    writeFileSync(f, "120.50 99.00\n");
    expect((await checkUptime(f, 600)).ok).toBe(false);
    expect((await checkUptime(f, 100)).ok).toBe(true);
    writeFileSync(f, "garbage");
    expect((await checkUptime(f, 1)).ok).toBe(false);
    expect((await checkUptime("/proc/uptime", 0)).ok).toBe(true);
    expect(await checkUptime(null, 1)).toMatchObject({ ok: true, detail: expect.stringMatching(/^up \d+ s/) });
    expect((await checkUptime(null, 10 ** 12)).ok).toBe(false);
  });
});

describe("config and profiles", () => {
  it("fills defaults and builds argv without a shell", () => {
    const cfg = parseSelfUpdateConfig({ host: "web1", checkoutDir: "/var/lib/lockstep-agent/checkout" });
    expect(cfg.health.systemState.accepted).toEqual(["running"]);
    expect(cfg.reboot.window).toBeNull();
    const nixos = profileCommands(cfg, "x86_64-linux");
    expect(nixos.attribute).toBe("nixosConfigurations.web1.config.system.build.toplevel");
    const values = { flake: cfg.checkoutDir, attr: nixos.attribute, out: "/o", profile: cfg.systemProfile, host: "web1" };
    expect(expandArgv(nixos.build, values)).toEqual(["nix", "build", "/var/lib/lockstep-agent/checkout#nixosConfigurations.web1.config.system.build.toplevel", "-o", "/o"]);
    expect(nixos.switches.map((a) => expandArgv(a, values))).toEqual([
      ["nix-env", "--profile", "/nix/var/nix/profiles/system", "--set", "/o"],
      ["/o/bin/switch-to-configuration", "switch"],
    ]);
    expect(() => parseSelfUpdateConfig({ host: "Bad Host", checkoutDir: "/x" })).toThrow(/host ids/);
    expect(() => parseSelfUpdateConfig({ host: "web1", checkoutDir: "/x", inputs: ["nixpkgs; rm -rf /"] })).toThrow();
  });
});

describe("lockstep-agent status", () => {
  const record = (outcome: RunRecord["outcome"], summary: string): RunRecord => ({
    id: `self-update-${outcome}`, host: "web1", mode: "flake-update", startedAt: "2026-11-21T03:17:00.000Z", finishedAt: "2026-11-21T03:18:00.000Z",
    durationMs: 60_000, outcome, summary, steps: [], health: [], generationBefore: 4, generationAfter: 5,
  });

  async function status(nextRunArgv: string[]): Promise<{ code: number; out: string }> {
    const stateDir = mkdtempSync(join(dir, "state-"));
    appendRunRecord(stateDir, record("succeeded", "switched to generation 5"));
    appendRunRecord(stateDir, record("unhealthy", "health check failed"));
    const config = join(stateDir, "self-update.json");
    writeFileSync(config, JSON.stringify({ host: "web1", checkoutDir: "/x", stateDir, nextRunArgv }));
    let out = "";
    const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => ((out += String(chunk)), true));
    try {
      const code = await runSelfUpdateCli(["status", "--config", config, "--json"]);
      return { code, out };
    } finally {
      spy.mockRestore();
    }
  }

  it("prints the last runs and the next scheduled run from systemd", async () => {
    const { code, out } = await status(["echo", "NextElapseUSecRealtime=Sun 2026-11-22 03:17:00 UTC"]);
    expect(code).toBe(0);
    const parsed = JSON.parse(out);
    expect(parsed.nextRun).toBe("Sun 2026-11-22 03:17:00 UTC");
    expect(parsed.runs.map((r: RunRecord) => r.outcome)).toEqual(["succeeded", "unhealthy"]);
  });

  it("says unknown when there is no timer to ask", async () => {
    expect(JSON.parse((await status(["false"])).out).nextRun).toBe("unknown");
    expect(JSON.parse((await status(["echo", "NextElapseUSecRealtime="])).out).nextRun).toBe("unknown");
  });

  it("self-update exits 3 when unhealthy and 4 when another run holds the lock, printing the record", async () => {
    const stateDir = mkdtempSync(join(dir, "cli-"));
    const config = join(stateDir, "self-update.json");
    writeFileSync(config, JSON.stringify({
      host: "web1", checkoutDir: join(stateDir, "checkout"), stateDir, logLevel: "fatal",
      health: { disk: { enabled: false }, systemState: { argv: ["echo", "maintenance"] }, uptime: { enabled: false } },
    }));
    const run = async () => {
      let out = "";
      const spy = vi.spyOn(process.stdout, "write").mockImplementation((chunk) => ((out += String(chunk)), true));
      try {
        return { code: await runSelfUpdateCli(["self-update", "--config", config, "--json"]), record: JSON.parse(out) as RunRecord };
      } finally {
        spy.mockRestore();
      }
    };
    const unhealthy = await run();
    expect(unhealthy.code).toBe(3);
    expect(unhealthy.record).toMatchObject({ outcome: "unhealthy", error: expect.stringContaining("system is maintenance") });
    const held = acquireSelfUpdateLock(join(stateDir, "self-update.lock"));
    try {
      const locked = await run();
      expect(locked.code).toBe(4);
      expect(locked.record.outcome).toBe("locked");
    } finally {
      held.release();
    }
  });

  it("rejects unknown arguments and a missing config with exit code 2", async () => {
    const err = vi.spyOn(process.stderr, "write").mockImplementation(() => true);
    try {
      expect(await runSelfUpdateCli(["status", "--bogus"])).toBe(2);
      expect(await runSelfUpdateCli(["self-update", "--config", join(dir, "missing.json")])).toBe(2);
    } finally {
      err.mockRestore();
    }
  });
});

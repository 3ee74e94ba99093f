/** The installed agent (selfCheck): `<path> version`, cached per file, compared with the running agent. */
import { describe, expect, it } from "vitest";
import { chmodSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync, existsSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { InstalledAgentProbe, installedDiffers, storePrefix } from "../../agent/installed.js";

function script(dir: string, name: string, body: string): string {
  const p = join(dir, name);
  writeFileSync(p, `#!/bin/sh\n${body}\n`);
  chmodSync(p, 0o755);
  return p;
}

describe("installed agent", () => {
  it("runs `<path> version` once per file state and again when the file changes", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-installed-"));
    const runs = join(dir, "runs");
    const bin = script(dir, "agent", `echo run >> '${runs}'\n[ "$1" = version ] || exit 2\necho 1.2.3`);
    const link = join(dir, "current");
    symlinkSync(bin, link);
    const probe = new InstalledAgentProbe(link, 5000, process.env);
    expect(await probe.read()).toEqual({ path: link, resolved: bin, version: "1.2.3" });
    expect(await probe.read()).toMatchObject({ version: "1.2.3" });
    expect(readFileSync(runs, "utf8").trim().split("\n")).toHaveLength(1);
    script(dir, "agent", `echo run >> '${runs}'\necho 1.2.40`);
    expect((await probe.read()).version).toBe("1.2.40");
    expect(readFileSync(runs, "utf8").trim().split("\n")).toHaveLength(2);
  });

  it("reports a missing file, a failing, hanging or garbled version command as an error", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-installed-"));
    const missing = await new InstalledAgentProbe(join(dir, "nope"), 5000, process.env).read();
    expect(missing.version).toBeUndefined();
    expect(missing.error).toBe(`${join(dir, "nope")}: ENOENT`);
    const failing = await new InstalledAgentProbe(script(dir, "failing", "echo broken >&2; exit 3"), 5000, process.env).read();
    expect(failing.error).toMatch(/failing version failed: exit 3: broken$/);
    const hanging = await new InstalledAgentProbe(script(dir, "hanging", "exec sleep 5"), 200, process.env).read();
    expect(hanging.error).toMatch(/hanging version failed: timed out after 200 ms$/);
    const garbled = await new InstalledAgentProbe(script(dir, "garbled", "echo 'usage: no such thing'"), 5000, process.env).read();
    expect(garbled.error).toMatch(/printed "usage: no such thing", not a version$/);
  });

  it("a failure is not cached: the next read tries again", async () => {
    const dir = mkdtempSync(join(tmpdir(), "lockstep-installed-"));
    const flag = join(dir, "ok");
    const bin = script(dir, "agent", `[ -e '${flag}' ] || exit 1\necho 2.0.0`);
    const probe = new InstalledAgentProbe(bin, 5000, process.env);
    expect((await probe.read()).error).toBeDefined();
    writeFileSync(flag, "");
    expect(existsSync(flag)).toBe(true);
    expect((await probe.read()).version).toBe("2.0.0");
  });

  it("differs by version, or by Nix package when the versions are equal", () => {
    const a = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-lockstep-1.0.0";
    const b = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-lockstep-1.0.0";
    expect(storePrefix(`${a}/bin/lockstep-agent`)).toBe(a);
    expect(storePrefix("/usr/bin/lockstep-agent")).toBeUndefined();
    expect(installedDiffers({ path: "p", version: "1.1.0" }, { version: "1.0.0" })).toBe("running 1.0.0 but 1.1.0 is installed");
    expect(installedDiffers({ path: "p", version: "1.0.0", resolved: `${a}/bin/lockstep-agent` }, { version: "1.0.0", dir: `${a}/lib/lockstep/dist/agent` })).toBeUndefined();
    expect(installedDiffers({ path: "p", version: "1.0.0", resolved: `${b}/bin/lockstep-agent` }, { version: "1.0.0", dir: `${a}/lib/lockstep/dist/agent` })).toBe(
      `running 1.0.0 from ${a} but ${b} is installed`,
    );
    // Unknown installed version and no store paths: nothing to go by.
    expect(installedDiffers({ path: "p", error: "ENOENT" }, { version: "1.0.0", dir: "/work/dist/agent" })).toBeUndefined();
  });
});

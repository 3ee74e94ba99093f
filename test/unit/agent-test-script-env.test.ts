/** The test scripts get the same environment from the `test` op and from the boot check (testScriptEnv). */
import { chmodSync, mkdirSync, mkdtempSync, readFileSync, symlinkSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { testScriptEnv } from "../../agent/ops/test.js";
import { runBootTests } from "../../agent/self-update/boot-check.js";

describe("test scripts' environment", () => {
  it("names the host and the generation under test; without a generation, LOCKSTEP_GENERATION is unset", () => {
    expect(testScriptEnv({ PATH: "/bin" }, "alpha", { generation: 7, path: "/nix/store/x-system" })).toEqual({ PATH: "/bin", LOCKSTEP_HOST: "alpha", LOCKSTEP_SYSTEM: "/nix/store/x-system", LOCKSTEP_GENERATION: "7" });
    expect(testScriptEnv({}, "alpha", {})).toEqual({ LOCKSTEP_HOST: "alpha", LOCKSTEP_SYSTEM: "" });
  });

  it("the boot check runs the host's scripts with it, on the profile's current generation", async () => {
    const root = mkdtempSync(join(tmpdir(), "lockstep-test-env-"));
    const system = join(root, "store-system");
    mkdirSync(system);
    const profiles = join(root, "profiles");
    mkdirSync(profiles);
    symlinkSync(system, join(profiles, "system-3-link"));
    symlinkSync("system-3-link", join(profiles, "system"));
    const out = join(root, "seen");
    const checkout = join(root, "checkout");
    mkdirSync(join(checkout, "tests", "common"), { recursive: true });
    const script = join(checkout, "tests", "common", "00-env.sh");
    writeFileSync(script, `#!/bin/sh\necho "$LOCKSTEP_HOST $LOCKSTEP_SYSTEM $LOCKSTEP_GENERATION" > "${out}"\n`);
    chmodSync(script, 0o755);
    const results = await runBootTests(checkout, "tests", "alpha", join(profiles, "system"), { PATH: process.env.PATH }, () => 10_000);
    expect(results).toEqual([{ check: "test", ok: true, detail: "common/00-env.sh passed" }]);
    expect(readFileSync(out, "utf8").trim()).toBe(`alpha ${system} 3`);
  });
});

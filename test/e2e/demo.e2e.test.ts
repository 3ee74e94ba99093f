/**
 * `npm run demo -- --once` keeps working: it runs the automatic update whose build fails on gamma
 * (detection, CI wait, merge, canary, waves, rollback, revert PR, notification) and exits 0 only
 * when everything went as it tells the reader. Needs `npm run build`.
 */
import { spawn } from "node:child_process";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { REPO_ROOT } from "../demo/hub-process.js";

describe("npm run demo -- --once", () => {
  it("runs one rollout end to end and exits 0", async () => {
    const child = spawn(process.execPath, [join(REPO_ROOT, "dist", "test", "demo", "demo.js"), "--once", "--port", "0"], { cwd: REPO_ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    const code = await new Promise<number | null>((resolve) => child.once("exit", resolve));
    expect(code, out).toBe(0);
    expect(out).toContain("The demo went as described.");
    expect(out).toMatch(/gamma\s+wave-2\s+failed \(switch failed: build failed/);
    expect(out).toMatch(/the merge was reverted by PR #\d+/);
    expect(out).toMatch(/notification sent: "Rollout r-\S+ rolled-back"/);
  }, 180_000);
});

import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, describe, expect, it } from "vitest";
import { bootCheckDue, writeBootPending, type BootPending } from "../../agent/self-update/boot-check.js";

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));
const marker = (extra: Partial<BootPending> = {}): BootPending => ({ runId: "r-1", generation: 2, systemPath: "/nix/store/x-system", previousGeneration: 1, requestedAt: "2026-12-05T03:00:00.000Z", ...extra });

describe("boot markers have one owner", () => {
  it("the daemon does not check the self-update's marker, nor the self-update the daemon's", () => {
    const stateDir = mkdtempSync(join(tmpdir(), "lockstep-boot-owner-"));
    dirs.push(stateDir);
    const due = (owner: "daemon" | "self-update") => bootCheckDue({ stateDir, bootIdFile: null, owner });
    writeBootPending(stateDir, marker({ owner: "self-update" }));
    expect([due("daemon"), due("self-update")]).toEqual([false, true]);
    writeBootPending(stateDir, marker({ owner: "daemon", rolloutId: "r-9" }));
    expect([due("daemon"), due("self-update")]).toEqual([true, false]);
    // Left by a self-update from before the daemon checked boots: the self-update's.
    writeBootPending(stateDir, marker());
    expect([due("daemon"), due("self-update")]).toEqual([false, true]);
  });
});

import { existsSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, expect, it } from "vitest";
import { statePaths } from "../../agent/config.js";
import { selfUpdateAwaitingJob } from "../../agent/self-update/confirmation.js";

const dirs: string[] = [];
afterEach(() => dirs.splice(0).forEach((d) => rmSync(d, { recursive: true, force: true })));

it("the daemon's look at the self-update's pending confirmation leaves an unreadable file to the self-update", () => {
  const stateDir = mkdtempSync(join(tmpdir(), "lockstep-peek-"));
  dirs.push(stateDir);
  const file = statePaths(stateDir).selfUpdateConfirmation;
  expect(selfUpdateAwaitingJob(stateDir)).toBeUndefined();
  writeFileSync(file, '{"job": "r-1", "deadline": 12}');
  expect(selfUpdateAwaitingJob(stateDir)).toBeUndefined();
  expect(existsSync(file)).toBe(true); // its owner sets it aside and says so
});

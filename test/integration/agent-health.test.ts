/**
 * Health = "nothing broke": the `test` op compares failed systemd units with those failed before the
 * last switch (a stand-in for systemctl prints a list the test controls) and runs declared checks.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { chmodSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { createServer, type Server } from "node:http";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { startTestBroker, type TestBroker } from "../support/brokers.js";
import { TestFleet } from "../fleet/fleet.js";

describe("agent health checks (failed units before/after the switch, declared checks)", () => {
  let broker: TestBroker;
  let fleet: TestFleet;
  let root: string;
  let server: Server;
  let failedFile: string;
  const host = "hc";
  /** What the stand-in systemctl lists as failed (name first, like `systemctl list-units --state=failed --plain --no-legend`). */
  const setFailed = (units: string[]) => writeFileSync(failedFile, units.map((u) => `${u} loaded failed failed ${u}`).join("\n") + (units.length ? "\n" : ""));

  beforeAll(async () => {
    root = mkdtempSync(join(tmpdir(), "lockstep-agent-health-"));
    failedFile = join(root, "failed-units.txt");
    const systemctl = join(root, "systemctl-stand-in");
    writeFileSync(systemctl, `#!/bin/sh\ncat '${failedFile}'\n`);
    chmodSync(systemctl, 0o755);
    setFailed(["old-broken.service"]);
    server = createServer((_req, res) => res.writeHead(200).end("ok"));
    await new Promise<void>((r) => server.listen(0, "127.0.0.1", () => r()));
    const port = (server.address() as { port: number }).port;
    broker = await startTestBroker({ kind: "aedes" });
    fleet = await TestFleet.create({
      root,
      hosts: [host],
      broker,
      hostOptions: { [host]: { extraConfig: { health: { failedUnitsArgv: [systemctl], tcp: [{ host: "127.0.0.1", port }], http: [{ url: `http://127.0.0.1:${port}/health`, status: 200 }] } } } },
    });
    await fleet.bootstrap(); // its switch records old-broken.service as failed before
  }, 300_000);

  afterAll(async () => {
    await fleet?.stop();
    await broker?.stop();
    await new Promise<void>((r) => (server ? server.close(() => r()) : r()));
    if (root && !process.env.LOCKSTEP_KEEP_TEST_DIRS) rmSync(root, { recursive: true, force: true });
  });

  it("a unit failed before the switch is reported, not blamed; one failed only after it fails the test", async () => {
    const ok = await fleet.runCommand(host, "test");
    expect(ok.state, ok.summary).toBe("succeeded");
    expect(ok.summary).toMatch(/passed on generation 1 \(failed units: no unit failed since the switch; already failed before the switch \(not blamed on it\): old-broken\.service\)$/);
    expect(fleet.jobOutput(host, ok.id).map((l) => l.text)).toEqual(expect.arrayContaining([
      expect.stringMatching(/^tcp 127\.0\.0\.1:\d+: ok: accepts connections$/),
      expect.stringMatching(/^http http:\/\/127\.0\.0\.1:\d+\/health: ok: answered 200$/),
    ]));

    setFailed(["old-broken.service", "nginx.service"]);
    const bad = await fleet.runCommand(host, "test");
    expect(bad.state).toBe("failed");
    expect(bad.summary).toMatch(/^1\/\d+ failed on generation 1: failed units: failed since the switch: nginx\.service \(systemctl status nginx\.service\); already failed before the switch \(not blamed on it\): old-broken\.service/);
    await fleet.waitFor(host, "tests", (c) => c.status === "failed");
  }, 200_000);

  it("an endpoint that stops answering fails the test", async () => {
    setFailed(["old-broken.service"]);
    await new Promise<void>((r) => server.close(() => r()));
    const down = await fleet.runCommand(host, "test");
    expect(down.state).toBe("failed");
    expect(down.summary).toMatch(/tcp 127\.0\.0\.1:\d+: .*ECONNREFUSED/);
    expect(down.summary).toMatch(/http http:\/\/127\.0\.0\.1:\d+\/health: fetch failed/);
  }, 200_000);
});

import { describe, it, expect } from "vitest";
import { createHmac } from "node:crypto";
import { createServer } from "node:http";
import type { AddressInfo } from "node:net";
import pino from "pino";
import { createWebhookHandler, verifyAndParse, WebhookError, type WebhookEvent } from "../../github/webhooks.js";

const SECRET = "whsec-unit";
const sign = (body: string, secret = SECRET) => `sha256=${createHmac("sha256", secret).update(body).digest("hex")}`;
const headers = (event: string, body: string, signature = sign(body)) => ({ "x-github-event": event, "x-github-delivery": "d-1", "x-hub-signature-256": signature });
const repo = { full_name: "acme/fleet" };

describe("verifyAndParse (pure webhook verification)", () => {
  it("accepts a correctly signed event and asks for a re-check", async () => {
    const body = JSON.stringify({ action: "synchronize", number: 4, pull_request: { head: { ref: "update_flake_lock_action", sha: "b".repeat(40) }, base: { ref: "main" } }, repository: repo });
    const e = await verifyAndParse(Buffer.from(body), headers("pull_request", body), SECRET, { repository: "acme/fleet" });
    expect(e).toEqual({ name: "pull_request", deliveryId: "d-1", action: "synchronize", repository: "acme/fleet", recheck: true, summary: "pull_request synchronize #4" });
  });

  it("refuses a missing or wrong signature with 401, and a tampered body", async () => {
    const body = JSON.stringify({ ref: "refs/heads/main", after: "c".repeat(40), repository: repo });
    const noSig = await verifyAndParse(body, { "x-github-event": "push" }, SECRET).catch((e) => e);
    expect(noSig).toBeInstanceOf(WebhookError);
    expect(noSig.status).toBe(401);
    const wrong = await verifyAndParse(body, headers("push", body, sign(body, "other-secret")), SECRET).catch((e) => e);
    expect([wrong.status, wrong.message]).toEqual([401, expect.stringContaining("signature does not match")]);
    const tampered = await verifyAndParse(body.replace("main", "evil"), headers("push", body), SECRET).catch((e) => e);
    expect(tampered.status).toBe(401);
  });

  it("invalid payloads are 400, too-large bodies 413; other repos and other events are not re-checks", async () => {
    const bad = JSON.stringify({ sha: "not-a-sha", state: "success", context: "ci", repository: repo });
    expect((await verifyAndParse(bad, headers("status", bad), SECRET).catch((e) => e)).status).toBe(400);
    const notJson = "{nope";
    expect((await verifyAndParse(notJson, headers("push", notJson), SECRET).catch((e) => e)).status).toBe(400);
    const big = JSON.stringify({ pad: "x".repeat(2000) });
    expect((await verifyAndParse(big, headers("push", big), SECRET, { maxBodyBytes: 1000 }).catch((e) => e)).status).toBe(413);
    const other = JSON.stringify({ ref: "refs/heads/main", after: "c".repeat(40), repository: { full_name: "someone/else" } });
    expect((await verifyAndParse(other, headers("push", other), SECRET, { repository: "acme/fleet" })).recheck).toBe(false);
    const issues = JSON.stringify({ action: "opened" });
    expect((await verifyAndParse(issues, headers("issues", issues), SECRET)).recheck).toBe(false);
    const ping = JSON.stringify({ zen: "Keep it logically awesome." });
    expect((await verifyAndParse(ping, headers("ping", ping), SECRET)).name).toBe("ping");
  });

  it("check_suite, check_run and status events re-check", async () => {
    const events: [string, unknown][] = [
      ["check_suite", { action: "completed", check_suite: { head_sha: "d".repeat(40) }, repository: repo }],
      ["check_run", { action: "completed", check_run: { head_sha: "d".repeat(40), name: "build" }, repository: repo }],
      ["status", { sha: "d".repeat(40), state: "success", context: "ci/test", repository: repo }],
    ];
    for (const [name, payload] of events) {
      const body = JSON.stringify(payload);
      expect((await verifyAndParse(body, headers(name, body), SECRET)).recheck).toBe(true);
    }
  });
});

describe("createWebhookHandler", () => {
  it("handles a delivery once: the same X-GitHub-Delivery again is acknowledged, with no second event or re-check", async () => {
    const events: WebhookEvent[] = [];
    let checks = 0;
    const handler = createWebhookHandler({ secret: SECRET, repository: "acme/fleet", onEvent: (e) => events.push(e), watcher: { checkNow: async () => void checks++ }, rememberDeliveries: 2, logger: pino({ level: "silent" }) });
    const server = createServer((req, res) => void handler(req, res));
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
    const body = JSON.stringify({ ref: "refs/heads/main", after: "0".repeat(40), repository: repo });
    const deliver = (delivery: string) => fetch(url, { method: "POST", headers: { "content-type": "application/json", ...headers("push", body), "x-github-delivery": delivery }, body });
    try {
      expect((await deliver("d-1")).status).toBe(202);
      const again = await deliver("d-1");
      expect(again.status).toBe(200);
      expect(await again.json()).toMatchObject({ ok: true, duplicate: true, delivery: "d-1" });
      expect(events.map((e) => e.deliveryId)).toEqual(["d-1"]);
      expect(checks).toBe(1);
      // Only the newest deliveries are remembered (here 2): the oldest is forgotten, not the store grown.
      expect((await deliver("d-2")).status).toBe(202);
      expect((await deliver("d-3")).status).toBe(202);
      expect((await deliver("d-1")).status).toBe(202);
      expect((await deliver("d-3")).status).toBe(200);
      expect(events.map((e) => e.deliveryId)).toEqual(["d-1", "d-2", "d-3", "d-1"]);
      expect(checks).toBe(4);
    } finally {
      server.closeAllConnections();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    }
  });
});

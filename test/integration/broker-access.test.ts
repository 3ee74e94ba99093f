/**
 * Access control and durability on real brokers: the embedded Aedes broker and a Mosquitto
 * configured by the files Lockstep generates. Each "must not arrive" check is followed by a
 * message that must arrive on the same connection, so the test waits for proof instead of sleeping.
 */
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import mqtt, { type MqttClient, type IClientOptions } from "mqtt";
import { Topics } from "../../protocol/index.js";
import { BROKER_KINDS, emptyClientIdConnack, startTestBroker, untilConnected, type TestBroker } from "../support/brokers.js";

const topics = new Topics();

describe.each(BROKER_KINDS)("broker access control and persistence (%s)", (kind) => {
  let broker: TestBroker;
  const clients: MqttClient[] = [];

  const recorders = new WeakMap<MqttClient, ReturnType<typeof record>>();

  /**
   * Connect with a message recorder attached BEFORE the connection opens: a persistent session's
   * queued messages arrive right after CONNACK, before `await connectAsync()` would return.
   */
  async function connect(creds: { username: string; password: string } | undefined, extra: IClientOptions = {}): Promise<MqttClient> {
    const client = mqtt.connect(broker.url, { ...creds, reconnectPeriod: 0, connectTimeout: 5_000, ...extra });
    recorders.set(client, record(client));
    clients.push(client);
    return untilConnected(client);
  }

  function recorder(client: MqttClient) {
    return recorders.get(client)!;
  }

  /** Subscribe and return the granted QoS per filter (128 = refused). */
  function subscribe(client: MqttClient, filter: string): Promise<number> {
    return new Promise((resolve, reject) => {
      client.subscribe(filter, { qos: 1 }, (err, granted) => {
        const packetGranted = (err as { packet?: { granted?: number[] } } | null)?.packet?.granted;
        if (packetGranted) return resolve(packetGranted[0]!);
        if (err) return reject(err);
        resolve(granted![0]!.qos);
      });
    });
  }

  /** Collect messages; `until(topic)` resolves when a message on that topic arrives. */
  function record(client: MqttClient) {
    const seen: Array<{ topic: string; payload: string }> = [];
    const waiters: Array<{ topic: string; resolve: () => void }> = [];
    client.on("message", (topic, payload) => {
      seen.push({ topic, payload: payload.toString() });
      for (const w of waiters.filter((w) => w.topic === topic)) w.resolve();
    });
    return {
      seen,
      topics: () => seen.map((m) => m.topic),
      until(topic: string, timeoutMs = 5_000): Promise<void> {
        if (seen.some((m) => m.topic === topic)) return Promise.resolve();
        return new Promise((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`no message on ${topic} within ${timeoutMs} ms; saw ${JSON.stringify(seen)}`)), timeoutMs);
          waiters.push({ topic, resolve: () => (clearTimeout(timer), resolve()) });
        });
      },
    };
  }

  beforeAll(async () => {
    broker = await startTestBroker({ kind });
  });
  afterEach(async () => {
    await Promise.all(clients.splice(0).map((c) => c.endAsync(true)));
  });
  afterAll(async () => {
    await broker?.stop();
  });

  it("refuses a wrong password and anonymous clients", async () => {
    const real = await broker.credentials("agent", "auth-a");
    await expect(connect({ username: real.username, password: real.password + "x" })).rejects.toThrow(/Not authorized|Bad username/i);
    await expect(connect({ username: "nobody-here", password: "whatever-password" })).rejects.toThrow(/Not authorized|Bad username/i);
    await expect(connect(undefined)).rejects.toThrow(/Not authorized|Bad username/i);
    const ok = await connect(real);
    expect(ok.connected).toBe(true);
  });

  it("refuses a persistent session without a client id (CONNACK 2)", async () => {
    // A viewer: an agent may use no client id but its host's (lockstep-agent-<host>).
    const creds = await broker.credentials("viewer", "no-id");
    // MQTT.js refuses to send such a CONNECT, so it is written by hand.
    const connackCode = (clean: boolean) => emptyClientIdConnack(Number(new URL(broker.url).port), creds.username, creds.password, clean);
    expect(await connackCode(false)).toBe(2);
    // A clean session without one is fine.
    expect(await connackCode(true)).toBe(0);
  });

  it("host A cannot publish as host B; B's subscribers never see it", async () => {
    const a = await connect(await broker.credentials("agent", "pub-a"));
    const b = await connect(await broker.credentials("agent", "pub-b"));
    const hub = await connect(await broker.credentials("hub", "pub"));
    const bSeen = recorder(b);
    const hubSeen = recorder(hub);
    expect(await subscribe(b, `${topics.host("pub-b")}/#`)).toBe(1);
    expect(await subscribe(hub, topics.allHosts())).toBe(1);

    await a.publishAsync(topics.info("pub-b"), "forged", { qos: 1, retain: true });
    await a.publishAsync(topics.compartment("pub-b", "system"), "forged", { qos: 1, retain: true });
    await a.publishAsync(topics.haDiscovery("pub-b"), "forged", { qos: 1, retain: true });
    // A's own topic: this one must arrive, and after it the forged ones would have.
    await a.publishAsync(topics.info("pub-a"), "real", { qos: 1, retain: true });
    await hubSeen.until(topics.info("pub-a"));

    expect(hubSeen.topics()).toEqual([topics.info("pub-a")]);
    expect(bSeen.seen).toEqual([]);
    // Nor was anything forged retained: a new subscriber sees only A's real message.
    const late = await connect(await broker.credentials("hub", "late"));
    const lateSeen = recorder(late);
    await subscribe(late, topics.allHosts());
    await lateSeen.until(topics.info("pub-a"));
    expect(lateSeen.seen).toEqual([{ topic: topics.info("pub-a"), payload: "real" }]);
  });

  it("host A cannot read B's commands, not even through wildcards", async () => {
    const a = await connect(await broker.credentials("agent", "cmd-a"));
    const b = await connect(await broker.credentials("agent", "cmd-b"));
    const operator = await connect(await broker.credentials("operator", "cmd"));
    const aSeen = recorder(a);
    const bSeen = recorder(b);
    const direct = await subscribe(a, topics.commands("cmd-b"));
    const wide = await subscribe(a, topics.allHosts());
    const everything = await subscribe(a, "#");
    if (kind === "aedes") {
      // The embedded broker refuses such subscriptions outright (SUBACK 0x80).
      expect([direct, wide, everything]).toEqual([128, 128, 128]);
    }
    expect(await subscribe(a, topics.commands("cmd-a"))).toBe(1);
    expect(await subscribe(b, topics.commands("cmd-b"))).toBe(1);

    await operator.publishAsync(topics.commands("cmd-b"), "for-b", { qos: 1 });
    await operator.publishAsync(topics.commands("cmd-a"), "for-a", { qos: 1 });
    await bSeen.until(topics.commands("cmd-b"));
    await aSeen.until(topics.commands("cmd-a"));
    expect(aSeen.seen).toEqual([{ topic: topics.commands("cmd-a"), payload: "for-a" }]);
  });

  it("an agent cannot command itself and a viewer cannot command anyone; an operator can", async () => {
    const host = await connect(await broker.credentials("agent", "view-h"));
    const viewer = await connect(await broker.credentials("viewer", "page"));
    const operator = await connect(await broker.credentials("operator", "page"));
    const hostSeen = recorder(host);
    const viewerSeen = recorder(viewer);
    expect(await subscribe(host, topics.commands("view-h"))).toBe(1);
    expect(await subscribe(host, topics.actions("view-h"))).toBe(1);
    expect(await subscribe(viewer, `${topics.host("view-h")}/#`)).toBe(1);

    await viewer.publishAsync(topics.commands("view-h"), "from-viewer", { qos: 1 });
    await viewer.publishAsync(topics.actions("view-h"), "switch", { qos: 1 });
    await viewer.publishAsync(topics.info("view-h"), "from-viewer", { qos: 1, retain: true });
    await host.publishAsync(topics.commands("view-h"), "from-itself", { qos: 1 });
    await operator.publishAsync(topics.commands("view-h"), "from-operator", { qos: 1 });
    await operator.publishAsync(topics.actions("view-h"), "pull", { qos: 1 });
    await host.publishAsync(topics.availability("view-h"), "online", { qos: 1, retain: true });

    await hostSeen.until(topics.actions("view-h"));
    await viewerSeen.until(topics.availability("view-h"));
    expect(hostSeen.seen).toEqual([
      { topic: topics.commands("view-h"), payload: "from-operator" },
      { topic: topics.actions("view-h"), payload: "pull" },
    ]);
    // The viewer reads state and actions but never commands.
    expect(viewerSeen.seen.map((m) => m.payload)).toEqual(["pull", "online"]);
  });

  it("retained state and a queued QoS 1 command survive a broker restart", async () => {
    const agentCreds = await broker.credentials("agent", "persist-h");
    const operator = await connect(await broker.credentials("operator", "persist"));
    const clientId = agentCreds.clientId;
    // The agent's persistent session: subscribe, then go offline.
    const first = await connect(agentCreds, { clean: false, clientId });
    expect(await subscribe(first, topics.commands("persist-h"))).toBe(1);
    await first.publishAsync(topics.compartment("persist-h", "git"), '{"status":"ok"}', { qos: 1, retain: true });
    await first.endAsync();

    // While it is offline a command is queued for it.
    await operator.publishAsync(topics.commands("persist-h"), "queued-switch", { qos: 1 });
    await operator.endAsync();
    await broker.restart();

    const back = await connect(agentCreds, { clean: false, clientId });
    const seen = recorder(back);
    await seen.until(topics.commands("persist-h"), 10_000);
    expect(seen.seen).toEqual([{ topic: topics.commands("persist-h"), payload: "queued-switch" }]);

    const reader = await connect(await broker.credentials("viewer", "persist"));
    const readerSeen = recorder(reader);
    await subscribe(reader, topics.compartment("persist-h", "git"));
    await readerSeen.until(topics.compartment("persist-h", "git"));
    expect(readerSeen.seen[0]!.payload).toBe('{"status":"ok"}');
  });

  it("a host's session belongs to its agent: another agent's credentials cannot take it over, and its queued command survives", async () => {
    const owner = await broker.credentials("agent", "owner-a");
    const taker = await broker.credentials("agent", "taker-b");
    const operator = await connect(await broker.credentials("operator", "takeover"));
    const first = await connect(owner, { clean: false });
    expect(await subscribe(first, topics.commands("owner-a"))).toBe(1);
    await first.endAsync();
    await operator.publishAsync(topics.commands("owner-a"), "queued-for-a", { qos: 1 });

    // B's own password with A's client id, as a persistent and as a clean session (which would wipe A's).
    for (const clean of [false, true]) {
      const outcome = await connect({ username: taker.username, password: taker.password }, { clientId: owner.clientId!, clean }).then(
        () => "connected",
        (err: Error) => err.message,
      );
      // Mosquitto cannot bind a client id to a user with password and ACL files (broker/README.md):
      // it hands B the session; the ACL keeps A's command from B, but the queue is gone.
      expect(outcome).toMatch(kind === "aedes" ? /Not authorized/ : /^connected$/);
    }

    const back = await connect(owner, { clean: false });
    if (kind === "mosquitto") {
      expect(await subscribe(back, topics.commands("owner-a"))).toBe(1); // B's clean session ended A's
      await operator.publishAsync(topics.commands("owner-a"), "after-takeover", { qos: 1 });
      await recorder(back).until(topics.commands("owner-a"));
      expect(recorder(back).seen.map((m) => m.payload)).toEqual(["after-takeover"]);
      return;
    }
    await recorder(back).until(topics.commands("owner-a"));
    expect(recorder(back).seen).toEqual([{ topic: topics.commands("owner-a"), payload: "queued-for-a" }]);
  });

  it("a last will on a topic its user may not publish to never reaches anyone", async () => {
    const agent = await connect(await broker.credentials("agent", "will-h"));
    expect(await subscribe(agent, topics.commands("will-h"))).toBe(1);
    const seen = recorder(agent);
    const forged = { topic: topics.commands("will-h"), payload: Buffer.from("forged-by-will"), qos: 1 as const, retain: false };
    // The embedded broker refuses the connection (its wills may go out after a restart, with no
    // connection left to check); Mosquitto accepts it and checks the will when it fires.
    const forger = await connect(await broker.credentials("viewer", "will-forger"), { will: forged }).catch((err: Error) => {
      expect(err.message).toMatch(/[Nn]ot authorized/);
      return undefined;
    });
    forger?.stream.destroy(); // dies without DISCONNECT: the will fires now, if it may
    await new Promise((r) => setTimeout(r, 200));
    const operator = await connect(await broker.credentials("operator", "will-check"));
    await operator.publishAsync(topics.commands("will-h"), "marker", { qos: 1 });
    await seen.until(topics.commands("will-h"));
    expect(seen.seen.map((m) => m.payload)).toEqual(["marker"]);
  });

  it("a new subscriber never ends on a retained value older than one it already got live", async () => {
    // The retained copy is read while live publishes go on; it must not arrive after a newer one.
    // Published as fast as the broker takes it: the hub role (the embedded broker's publish rate limits other roles).
    const agent = await connect(await broker.credentials("hub", "busy-h"));
    const topic = topics.info("busy-h");
    let n = 0;
    let running = true;
    const publishing = (async () => {
      while (running) await agent.publishAsync(topic, String(++n), { qos: 1, retain: true });
    })();
    const viewer = await broker.credentials("viewer", "busy");
    let stale = 0;
    try {
      for (let i = 0; i < 100; i++) {
        const client = await connect(viewer);
        const seen = recorder(client);
        await subscribe(client, topics.info("+"));
        await seen.until(topic);
        await new Promise((r) => setTimeout(r, 20));
        const values = seen.seen.filter((m) => m.topic === topic).map((m) => Number(m.payload));
        if (values.some((v, j) => j > 0 && v < values[j - 1]!)) stale++;
        await client.endAsync();
      }
    } finally {
      running = false;
      await publishing;
    }
    expect(stale, `${stale} of 100 subscriptions saw an older retained value after a newer live one`).toBe(0);
  }, 60_000);
});

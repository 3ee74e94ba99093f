import { mkdtemp, readFile, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { Topics } from "../../protocol/index.js";
import { CredentialStore } from "../../broker/credentials.js";
import { mosquittoAclFile, mosquittoConf, mosquittoPasswdFile, systemUser, writeMosquittoConfig } from "../../broker/mosquitto.js";
import { main, type CliIo } from "../../hub/cli.js";

const users = [
  { name: "web1", role: "agent" as const, mosquittoHash: "$7$101$c2FsdA==$aGFzaA==" },
  { name: "page", role: "viewer" as const, mosquittoHash: "$7$101$c2FsdA==$aGFzaA==" },
  { name: "Ops@home", role: "operator" as const, mosquittoHash: "$7$101$c2FsdA==$aGFzaA==" },
  { name: "hub", role: "hub" as const, mosquittoHash: "$7$101$c2FsdA==$aGFzaA==" },
];

describe("generated Mosquitto files", () => {
  it("passwd has one name:hash line per user", () => {
    expect(mosquittoPasswdFile(users).split("\n")).toEqual([...users.map((u) => `${u.name}:${u.mosquittoHash}`), ""]);
  });

  it("acl: one set of %u patterns for all agents, user blocks for the rest", () => {
    const acl = mosquittoAclFile(users);
    expect(acl).toContain("pattern write lockstep/v1/hosts/%u/availability\n");
    expect(acl).toContain("pattern write lockstep/v1/hosts/%u/compartments/+\n");
    expect(acl).toContain("pattern write lockstep/v1/hosts/%u/jobs/#\n");
    expect(acl).toContain("pattern write homeassistant/device/lockstep_%u/config\n");
    expect(acl).toContain("pattern read lockstep/v1/hosts/%u/#\n");
    expect(acl).not.toMatch(/pattern write .*commands/);
    expect(acl).not.toMatch(/pattern write .*actions/);
    expect(acl).not.toContain("user web1");
    // The viewer reads, never writes; its name is a valid host id, so that namespace is denied.
    const viewerBlock = acl.slice(acl.indexOf("user page"), acl.indexOf("\n\n", acl.indexOf("user page")));
    expect(viewerBlock).toContain("topic deny lockstep/v1/hosts/page/#");
    expect(viewerBlock).not.toMatch(/topic (write|readwrite)/);
    expect(viewerBlock).not.toMatch(/topic read .*commands/);
    // "Ops@home" cannot be a host id: no deny lines needed.
    const operatorBlock = acl.slice(acl.indexOf("user Ops@home"), acl.indexOf("\n\n", acl.indexOf("user Ops@home")));
    expect(operatorBlock).toContain("topic write lockstep/v1/hosts/+/commands");
    // Each operator asks the hub on its own topic only (the topic says who asked).
    expect(operatorBlock).toContain("topic write lockstep/v1/hub/actions/Ops@home");
    expect(acl).not.toMatch(/pattern \S+ lockstep\/v1\/hub\/actions/);
    expect(operatorBlock).not.toContain("deny");
    expect(acl).toMatch(/user hub\n(topic deny .*\n)*topic readwrite #\n/);
  });

  it("acl follows custom prefixes", () => {
    const acl = mosquittoAclFile(users, new Topics("home/fleet", "ha"));
    expect(acl).toContain("pattern write home/fleet/v1/hosts/%u/info\n");
    expect(acl).toContain("pattern write ha/device/lockstep_%u/config\n");
    expect(acl).not.toContain("lockstep/v1");
  });

  it("conf raises the queue limits, persists, and listens on MQTT and WebSocket", () => {
    const conf = mosquittoConf({ dir: "/etc/lockstep-mq", tcp: { port: 1883 }, ws: { port: 9001, host: "127.0.0.1" } });
    expect(conf).toContain("allow_anonymous false\n");
    expect(conf).toContain("password_file /etc/lockstep-mq/passwd\n");
    expect(conf).toContain("acl_file /etc/lockstep-mq/acl\n");
    expect(conf).toContain("persistence true\n");
    expect(conf).toContain("persistence_location /etc/lockstep-mq/data/\n");
    expect(conf).toMatch(/max_inflight_messages (\d+)/);
    expect(Number(/max_queued_messages (\d+)/.exec(conf)![1])).toBeGreaterThanOrEqual(10_000);
    expect(Number(/max_inflight_messages (\d+)/.exec(conf)![1])).toBeGreaterThan(20);
    expect(conf).toContain("listener 1883\nprotocol mqtt\n");
    expect(conf).toContain("listener 9001 127.0.0.1\nprotocol websockets\n");
    expect(conf).not.toContain("certfile");
    const tls = mosquittoConf({ dir: "/etc/lockstep-mq", tcp: { port: 1883 }, tls: { port: 8883, certFile: "/etc/ssl/mqtt.pem", keyFile: "/etc/ssl/mqtt.key" } });
    expect(tls).toContain("listener 8883\nprotocol mqtt\ncertfile /etc/ssl/mqtt.pem\nkeyfile /etc/ssl/mqtt.key\n");
  });
});

describe("writeMosquittoConfig and the CLI", () => {
  let dir: string;
  const out: string[] = [];
  const err: string[] = [];
  const io: CliIo = { stdout: (s) => void out.push(s), stderr: (s) => void err.push(s), env: {} };

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-mqgen-"));
    out.length = 0;
    err.length = 0;
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("writes passwd (0600), acl and conf from the store", async () => {
    const store = await CredentialStore.open(join(dir, "credentials.json"));
    await store.add("web1", "agent", "password-web1");
    const files = await writeMosquittoConfig(store, { dir: join(dir, "mq"), tcp: { port: 1883 } });
    expect((await stat(files.passwdFile)).mode & 0o777).toBe(0o600);
    const passwd = await readFile(files.passwdFile, "utf8");
    expect(passwd).toMatch(/^web1:\$7\$\d+\$/);
    expect(passwd).not.toContain("password-web1");
    expect(await readFile(files.confFile, "utf8")).toContain(`acl_file ${files.aclFile}`);
  });

  it("users add prints the generated password once; list shows no secrets", async () => {
    const dataDir = join(dir, "state");
    expect(await main(["--data-dir", dataDir, "users", "add", "web1", "--role", "agent"], io)).toBe(0);
    const password = out.join("").trim();
    expect(password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    const store = await CredentialStore.open(join(dataDir, "credentials.json"));
    expect(await store.verify("web1", password)).not.toBeNull();

    out.length = 0;
    expect(await main(["users", "list", "--data-dir", dataDir], io)).toBe(0);
    expect(out.join("")).toMatch(/web1\s+agent/);
    expect(out.join("")).not.toContain(password);

    expect(await main(["--data-dir", dataDir, "users", "remove", "web1"], io)).toBe(0);
    expect(await main(["--data-dir", dataDir, "users", "remove", "web1"], io)).toBe(1);
  });

  it("explains usage errors with exit code 2", async () => {
    expect(await main(["users", "add", "web1", "--data-dir", dir], io)).toBe(2);
    expect(err.join("")).toMatch(/--role must be one of agent, viewer, operator, hub/);
    expect(await main(["frobnicate"], io)).toBe(2);
    expect(await main(["mosquitto-config", "--data-dir", dir], io)).toBe(2);
    expect(err.join("")).toMatch(/--out DIR is required/);
    expect(await main(["mosquitto-config", "--out", dir, "--port", "99999", "--data-dir", dir], io)).toBe(2);
  });

  it("systemUser reads uid and gid from a passwd file", async () => {
    const passwd = join(dir, "passwd");
    await writeFile(passwd, "root:x:0:0:root:/root:/bin/sh\nmosquitto:x:102:109::/var/lib/mosquitto:/usr/sbin/nologin\n");
    expect(systemUser("mosquitto", passwd)).toEqual({ uid: 102, gid: 109 });
    expect(systemUser("nobody-here", passwd)).toBeUndefined();
    expect(systemUser("mosquitto", join(dir, "missing"))).toBeUndefined();
  });

  it("mosquitto-config writes the three files", async () => {
    const dataDir = join(dir, "state");
    await main(["--data-dir", dataDir, "users", "add", "page", "--role", "viewer"], io);
    expect(await main(["--data-dir", dataDir, "mosquitto-config", "--out", join(dir, "mq"), "--port", "1884", "--ws-port", "0"], io)).toBe(0);
    const conf = await readFile(join(dir, "mq", "mosquitto.conf"), "utf8");
    expect(conf).toContain("listener 1884\n");
    expect(conf).not.toContain("websockets");
    expect(await readFile(join(dir, "mq", "acl"), "utf8")).toContain("user page\n");
  });
});

import { execFileSync } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from "node:fs/promises";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { pbkdf2Sync } from "node:crypto";
import { afterEach, beforeEach, describe, expect, it } from "vitest";
import { CredentialError, CredentialStore, mosquittoPasswordHash } from "../../broker/credentials.js";

describe("CredentialStore", () => {
  let dir: string;
  let file: string;

  beforeEach(async () => {
    dir = await mkdtemp(join(tmpdir(), "lockstep-creds-"));
    file = join(dir, "state", "credentials.json");
  });
  afterEach(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  it("generates a password once, verifies it, and keeps no plaintext on disk", async () => {
    const store = await CredentialStore.open(file);
    const added = await store.add("web1", "agent");
    expect(added.generated).toBe(true);
    expect(added.password).toMatch(/^[A-Za-z0-9_-]{32}$/);
    expect(await store.verify("web1", added.password)).toMatchObject({ name: "web1", role: "agent" });
    expect(await store.verify("web1", added.password + "x")).toBeNull();
    expect(await store.verify("web1", "")).toBeNull();
    expect(await store.verify("nobody", added.password)).toBeNull();

    const text = await readFile(file, "utf8");
    expect(text).not.toContain(added.password);
    expect(text).toContain('"mosquittoHash": "$7$');
    // Nothing else (temp files) left next to it.
    expect(await readdir(join(dir, "state"))).toEqual(["credentials.json"]);
  });

  it("hashes generated passwords with a keyed HMAC and chosen ones with scrypt; both verify, wrong ones do not", async () => {
    const store = await CredentialStore.open(file);
    const agent = await store.add("web1", "agent");
    const person = await store.add("alice", "operator", "a chosen passphrase");
    const onDisk = JSON.parse(await readFile(file, "utf8")) as { hmacKey?: string; users: Array<{ name: string; hmac?: string; scrypt?: unknown }> };
    expect(Buffer.from(onDisk.hmacKey ?? "", "base64")).toHaveLength(32);
    const byName = new Map(onDisk.users.map((u) => [u.name, u]));
    expect(byName.get("web1")).toMatchObject({ hmac: expect.any(String) });
    expect(byName.get("web1")?.scrypt).toBeUndefined();
    expect(byName.get("alice")).toMatchObject({ scrypt: expect.any(Object) });
    expect(byName.get("alice")?.hmac).toBeUndefined();

    // A second store (another process) reads the same key.
    const other = await CredentialStore.open(file);
    expect(await other.verify("web1", agent.password)).toMatchObject({ name: "web1" });
    expect(await other.verify("web1", person.password)).toBeNull();
    expect(await other.verify("alice", person.password)).toMatchObject({ name: "alice", role: "operator" });
    expect(await other.verify("alice", agent.password)).toBeNull();
  });

  it("keeps verifying users stored with scrypt before generated passwords got an HMAC", async () => {
    const store = await CredentialStore.open(file);
    const added = await store.add("web1", "agent", "an old generated secret");
    const onDisk = JSON.parse(await readFile(file, "utf8")) as { users: Array<{ scrypt?: unknown; hmac?: string }> };
    expect(onDisk.users[0]?.scrypt).toBeDefined();
    expect(await (await CredentialStore.open(file)).verify("web1", added.password)).toMatchObject({ name: "web1" });
  });

  it("adds many users with one write, all or none", async () => {
    const store = await CredentialStore.open(file);
    const added = await store.addMany(Array.from({ length: 50 }, (_, i) => ({ name: `host-${i}`, role: "agent" as const })));
    expect(added).toHaveLength(50);
    expect(store.list()).toHaveLength(50);
    expect(await store.verify("host-7", added[7]!.password)).toMatchObject({ name: "host-7" });
    await expect(store.addMany([{ name: "new-1", role: "agent" }, { name: "host-3", role: "agent" }])).rejects.toThrow(/already exists/);
    await expect(store.addMany([{ name: "twin", role: "agent" }, { name: "twin", role: "agent" }])).rejects.toThrow(/listed twice/);
    expect((await CredentialStore.open(file)).list()).toHaveLength(50);
  });

  it("writes the file with mode 0600", async () => {
    const store = await CredentialStore.open(file);
    await store.add("page", "viewer", "a-given-password");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
    await store.add("ops", "operator");
    expect((await stat(file)).mode & 0o777).toBe(0o600);
  });

  it("lists users without secrets, removes them, and refuses duplicates", async () => {
    const store = await CredentialStore.open(file);
    await store.add("web1", "agent", "password-1");
    await store.add("hub", "hub", "password-2");
    const list = store.list();
    expect(list.map((u) => [u.name, u.role])).toEqual([
      ["web1", "agent"],
      ["hub", "hub"],
    ]);
    expect(JSON.stringify(list)).not.toMatch(/hash|salt|password/i);
    await expect(store.add("web1", "viewer", "password-3")).rejects.toThrow(CredentialError);
    expect(await store.remove("web1")).toBe(true);
    expect(await store.remove("web1")).toBe(false);
    expect(await store.verify("web1", "password-1")).toBeNull();
  });

  it("validates names: agents are host ids", async () => {
    const store = await CredentialStore.open(file);
    await expect(store.add("Web1", "agent")).rejects.toThrow(/invalid agent name/);
    await expect(store.add("web/1", "agent")).rejects.toThrow(/invalid agent name/);
    await expect(store.add("a:b", "viewer")).rejects.toThrow(/invalid user name/);
    await expect(store.add("$hub", "hub")).rejects.toThrow(/invalid user name/);
    await expect(store.add("ok-name", "viewer", "short")).rejects.toThrow(/8-1024/);
    await store.add("Alice@home", "viewer", "long-enough");
    expect(store.get("Alice@home")?.role).toBe("viewer");
  });

  it("sees users added by another process (another store on the same file)", async () => {
    const hubView = await CredentialStore.open(file);
    const cli = await CredentialStore.open(file);
    const { password } = await cli.add("web2", "agent");
    expect(await hubView.verify("web2", password)).not.toBeNull();
    await cli.remove("web2");
    expect(await hubView.verify("web2", password)).toBeNull();
  });

  it("logins that share one look at the file still see a change made before they were called", async () => {
    const hubView = await CredentialStore.open(file);
    const cli = await CredentialStore.open(file);
    const { password } = await cli.add("web3", "agent");
    // A burst whose stats are running (or waiting for the running one) while the user is removed:
    const during = Array.from({ length: 20 }, () => hubView.verify("web3", password));
    await cli.remove("web3");
    const after = Array.from({ length: 20 }, () => hubView.verify("web3", password));
    await Promise.all(during); // either answer is right for these
    expect(await Promise.all(after)).toEqual(Array(20).fill(null));
  });

  it("loses no user when two processes add at the same time", async () => {
    const hub = await CredentialStore.open(file);
    const cli = await CredentialStore.open(file);
    await Promise.all([
      ...Array.from({ length: 6 }, (_, i) => hub.add(`hub-side-${i}`, "agent", "password-x")),
      ...Array.from({ length: 6 }, (_, i) => cli.add(`cli-side-${i}`, "agent", "password-y")),
    ]);
    const fresh = await CredentialStore.open(file);
    expect(fresh.list()).toHaveLength(12);
    expect(await readdir(join(dir, "state"))).toEqual(["credentials.json"]);
  });

  it("rejects a malformed file with a clear error", async () => {
    await writeFile(join(dir, "bad.json"), '{"version":1,"users":[{"name":"x"}]}');
    await expect(CredentialStore.open(join(dir, "bad.json"))).rejects.toThrow(/malformed: users\.0\.role/);
    await writeFile(join(dir, "bad2.json"), "{nope");
    await expect(CredentialStore.open(join(dir, "bad2.json"))).rejects.toThrow(/not valid JSON/);
  });
});

describe("Mosquitto password hash", () => {
  it("has Mosquitto 2.0's $7$ layout", () => {
    const hash = mosquittoPasswordHash("secret");
    const [, seven, iterations, salt, digest] = hash.split("$");
    expect(seven).toBe("7");
    expect(Number(iterations)).toBeGreaterThanOrEqual(101);
    expect(Buffer.from(salt!, "base64")).toHaveLength(12);
    expect(Buffer.from(digest!, "base64")).toHaveLength(64);
  });

  it.runIf(existsSync("/usr/bin/mosquitto_passwd"))("matches what mosquitto_passwd computes for the same salt", async () => {
    const dir = await mkdtemp(join(tmpdir(), "lockstep-passwd-"));
    try {
      const passwd = join(dir, "passwd");
      execFileSync("/usr/bin/mosquitto_passwd", ["-c", "-b", passwd, "alice", "s3cret-pass"]);
      const line = (await readFile(passwd, "utf8")).trim();
      const [, iterations, salt] = line.slice("alice:".length).split("$").slice(1);
      const ours = mosquittoPasswordHash("s3cret-pass", Number(iterations), Buffer.from(salt!, "base64"));
      expect(`alice:${ours}`).toBe(line);
      // And the digest is PBKDF2-SHA512 (not a coincidence of the salt).
      expect(ours.split("$")[4]).toBe(pbkdf2Sync("s3cret-pass", Buffer.from(salt!, "base64"), Number(iterations), 64, "sha512").toString("base64"));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

/**
 * Who may connect to the broker: a JSON file of users with password hashes (never plaintext).
 *
 * Two kinds of hash, chosen by where the password came from:
 * - a password the store generated (24 random bytes, what every agent gets) is verified with
 *   HMAC-SHA-256 under a random per-store key: with 192 random bits nothing is gained by a slow
 *   hash, and thousands of hosts reconnecting after a hub restart cost microseconds each instead
 *   of 56 ms and 16 MiB of scrypt per login;
 * - a password a person chose (`--password-file`) is hashed with scrypt.
 *
 * Each user also carries a Mosquitto 2.0 password hash computed when the user is added, so the
 * same store can produce a Mosquitto `password_file` without ever knowing the password again.
 * The file is written atomically (temp file + rename) with mode 0600, and re-read when another
 * process (the `lockstep users` CLI) changed it, so a running hub sees new users immediately.
 */
import { createHash, createHmac, pbkdf2Sync, randomBytes, scrypt, timingSafeEqual } from "node:crypto";
import { statSync } from "node:fs";
import { chmod, mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises";
import { dirname } from "node:path";
import { z } from "zod";
import { LockstepError, USER_NAME_PATTERN, formatZodError, isValidHostId } from "../protocol/index.js";

export const ROLES = ["agent", "viewer", "operator", "hub"] as const;
export const UserRole = z.enum(ROLES);
export type UserRole = z.infer<typeof UserRole>;

/** Non-agent user names: they go into Mosquitto's passwd/ACL files, so no ":" or whitespace. */

// scrypt cost: 2^14 * 8 * 128 bytes = 16 MiB and ~40 ms per check, the node default.
const SCRYPT_PARAMS = { N: 16384, r: 8, p: 1 } as const;
const SCRYPT_KEY_LENGTH = 32;
/** Mosquitto's own default is 101 iterations; more is accepted by every 2.x broker (the count is in the hash). */
export const MOSQUITTO_PBKDF2_ITERATIONS = 1000;

const StoredUser = z.object({
  name: z.string().min(1),
  role: UserRole,
  /** For chosen passwords. */
  scrypt: z
    .object({
      N: z.number().int().positive(),
      r: z.number().int().positive(),
      p: z.number().int().positive(),
      salt: z.string().min(1),
      hash: z.string().min(1),
    })
    .optional(),
  /** For generated passwords: base64 HMAC-SHA-256 of the password under the file's hmacKey. */
  hmac: z.string().min(1).optional(),
  /** `$7$<iterations>$<base64 salt>$<base64 hash>` (PBKDF2-SHA512), Mosquitto 2.0's passwd format. */
  mosquittoHash: z.string().regex(/^\$7\$\d+\$[A-Za-z0-9+/=]+\$[A-Za-z0-9+/=]+$/),
  createdAt: z.string(),
});
type StoredUser = z.infer<typeof StoredUser>;

const CredentialsFile = z
  .object({
    version: z.literal(1),
    /** base64 random key for the HMAC of generated passwords; created with the first such user. */
    hmacKey: z.string().min(1).optional(),
    users: z.array(StoredUser.refine((u) => u.scrypt !== undefined || u.hmac !== undefined, "a user needs a scrypt or hmac hash")),
  })
  .refine((f) => f.hmacKey !== undefined || f.users.every((u) => u.hmac === undefined), "users with an hmac hash need the file's hmacKey");

/** How long a successful check is remembered (a reconnect storm costs one hash per user, not per attempt). */
const VERIFIED_CACHE_MS = 5 * 60_000;

/** A user as shown to people and other modules: no hashes. */
export interface UserSummary {
  name: string;
  role: UserRole;
  createdAt: string;
}

export class CredentialError extends LockstepError {
  override name = "CredentialError";
  constructor(message: string, hint?: string) {
    super(message, "credentials", hint);
  }
}

/** Compute Mosquitto 2.0's `$7$` hash for a password (same as `mosquitto_passwd`). */
export function mosquittoPasswordHash(password: string, iterations = MOSQUITTO_PBKDF2_ITERATIONS, salt = randomBytes(12)): string {
  const hash = pbkdf2Sync(password, salt, iterations, 64, "sha512");
  return `$7$${iterations}$${salt.toString("base64")}$${hash.toString("base64")}`;
}

/** A fresh random password: 24 random bytes, URL-safe base64 (32 characters). */
export function generatePassword(): string {
  return randomBytes(24).toString("base64url");
}

function scryptAsync(password: string, salt: Buffer, params: { N: number; r: number; p: number }): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    // maxmem must cover 128 * N * r bytes, with some headroom.
    scrypt(password, salt, SCRYPT_KEY_LENGTH, { ...params, maxmem: 256 * params.N * params.r }, (err, key) =>
      err ? reject(err) : resolve(key),
    );
  });
}

export function validateUserName(name: string, role: UserRole): void {
  if (role === "agent") {
    if (!isValidHostId(name)) {
      throw new CredentialError(
        `invalid agent name "${name}"`,
        "an agent's user name is its host id: 1-63 characters of a-z, 0-9, '-' or '_', starting with a letter or digit",
      );
    }
  } else if (!USER_NAME_PATTERN.test(name)) {
    throw new CredentialError(
      `invalid user name "${name}"`,
      "use 1-64 characters of A-Z, a-z, 0-9, '.', '_', '@' or '-', starting with a letter or digit",
    );
  }
}

export class CredentialStore {
  private users = new Map<string, StoredUser>();
  /** The file's key for HMAC-hashed (generated) passwords. */
  private hmacKey?: Buffer;
  /** mtime+size of the file when last read, to notice changes made by another process. */
  private fileStamp = "";
  /**
   * Successful checks are remembered for VERIFIED_CACHE_MS (keyed by an HMAC of the password under a
   * per-process key) so a reconnect storm does not cost one scrypt per connection. Cleared whenever
   * the file changes.
   */
  private verified = new Map<string, { fingerprint: string; until: number }>();
  private readonly cacheKey = randomBytes(32);
  /** A hash to burn time on for unknown users, so timing does not reveal which names exist. */
  private readonly dummy = { salt: randomBytes(16), hash: randomBytes(SCRYPT_KEY_LENGTH) };
  /** The stat (and read) running now, and the one the callers that came meanwhile wait for. */
  private refreshing?: Promise<void>;
  private nextRefresh?: Promise<void>;
  /** Serialises read-modify-write cycles within this process. */
  private writing: Promise<unknown> = Promise.resolve();

  private constructor(readonly file: string) {}

  /** Open (or start) the store at `file`. A missing file is an empty store; it is created on first add. */
  static async open(file: string): Promise<CredentialStore> {
    const store = new CredentialStore(file);
    await store.refresh();
    return store;
  }

  /**
   * Re-read the file if it changed since the last read. Cheap (one synchronous stat) when it did
   * not. While a re-read runs, callers wait for the next check, which starts after it (so each still
   * sees any change made before its call) and is shared by all of them.
   */
  refresh(): Promise<void> {
    if (!this.refreshing) {
      this.refreshing = this.refreshNow().finally(() => (this.refreshing = undefined));
      return this.refreshing;
    }
    this.nextRefresh ??= this.refreshing
      .catch(() => undefined)
      .then(() => {
        this.nextRefresh = undefined;
        return this.refresh();
      });
    return this.nextRefresh;
  }

  private async refreshNow(): Promise<void> {
    let stamp: string;
    try {
      // Synchronous on purpose: a stat of a local file is microseconds, where the thread pool's
      // round trip per login stood out in the broker's profile (~10 % while 1,000 hosts connected).
      const s = statSync(this.file);
      stamp = `${s.mtimeMs}:${s.size}:${s.ino}`;
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "ENOENT") throw err;
      stamp = "missing";
    }
    if (stamp === this.fileStamp) return;
    const users = new Map<string, StoredUser>();
    if (stamp !== "missing") {
      const text = await readFile(this.file, "utf8");
      let parsed: unknown;
      try {
        parsed = JSON.parse(text);
      } catch (err) {
        throw new CredentialError(`credentials file ${this.file} is not valid JSON: ${(err as Error).message}`, "restore it from a backup or remove it and add the users again");
      }
      const result = CredentialsFile.safeParse(parsed);
      if (!result.success) {
        throw new CredentialError(`credentials file ${this.file} is malformed: ${formatZodError(result.error)}`, "restore it from a backup or remove it and add the users again");
      }
      for (const user of result.data.users) users.set(user.name, user);
      this.hmacKey = result.data.hmacKey !== undefined ? Buffer.from(result.data.hmacKey, "base64") : undefined;
    } else {
      this.hmacKey = undefined;
    }
    this.users = users;
    this.fileStamp = stamp;
    this.verified.clear();
  }

  list(): UserSummary[] {
    return [...this.users.values()]
      .map(summary)
      .sort((a, b) => a.role.localeCompare(b.role) || a.name.localeCompare(b.name));
  }

  get(name: string): UserSummary | undefined {
    const user = this.users.get(name);
    return user ? summary(user) : undefined;
  }

  /** Name, role and Mosquitto hash of every user, for generating a Mosquitto passwd file. */
  mosquittoEntries(): Array<{ name: string; role: UserRole; mosquittoHash: string }> {
    return [...this.users.values()]
      .sort((a, b) => a.name.localeCompare(b.name))
      .map((u) => ({ name: u.name, role: u.role, mosquittoHash: u.mosquittoHash }));
  }

  /**
   * Add a user. Without a password one is generated; the returned password is the only place
   * it ever appears in clear. Throws if the name exists (remove it first to change the password
   * or role) or is not valid for the role.
   */
  async add(name: string, role: UserRole, password?: string): Promise<{ user: UserSummary; password: string; generated: boolean }> {
    const [added] = await this.addMany([{ name, role, ...(password !== undefined ? { password } : {}) }]);
    return added!;
  }

  /**
   * Add several users with one write of the file (a fleet of thousands of hosts); all or none.
   * Same rules as add().
   */
  async addMany(entries: ReadonlyArray<{ name: string; role: UserRole; password?: string }>): Promise<Array<{ user: UserSummary; password: string; generated: boolean }>> {
    const names = new Set<string>();
    const prepared = await Promise.all(
      entries.map(async ({ name, role, password }) => {
        UserRole.parse(role);
        validateUserName(name, role);
        if (names.has(name)) throw new CredentialError(`user "${name}" is listed twice`);
        names.add(name);
        const generated = password === undefined;
        const secret = password ?? generatePassword();
        if (secret.length < 8 || secret.length > 1024) {
          throw new CredentialError("password must be 8-1024 characters long", "omit the password to have a strong one generated");
        }
        // Chosen passwords get scrypt now (slow, outside the file lock); generated ones an HMAC under the lock.
        const scrypt = generated ? undefined : await scryptHash(secret);
        const base = { name, role, mosquittoHash: mosquittoPasswordHash(secret), createdAt: new Date().toISOString() };
        return { base, scrypt, secret, generated };
      }),
    );
    const stored: StoredUser[] = [];
    await this.modify((users) => {
      for (const { base } of prepared) {
        if (users.has(base.name)) {
          throw new CredentialError(`user "${base.name}" already exists`, `run "lockstep users remove ${base.name}" first to replace it`);
        }
      }
      for (const { base, scrypt, secret } of prepared) {
        const user: StoredUser = scrypt ? { ...base, scrypt } : { ...base, hmac: hmacHash(this.keyForNewUsers(), secret) };
        users.set(base.name, user);
        stored.push(user);
      }
    });
    return prepared.map(({ secret, generated }, i) => ({ user: summary(stored[i]!), password: secret, generated }));
  }

  /** The file's HMAC key, created with the first user that needs one. */
  private keyForNewUsers(): Buffer {
    if (!this.hmacKey) this.hmacKey = randomBytes(32);
    return this.hmacKey;
  }

  /** Remove a user; returns false when there was no such user. */
  async remove(name: string): Promise<boolean> {
    let removed = false;
    await this.modify((users) => {
      removed = users.delete(name);
    });
    return removed;
  }

  /**
   * Check a name and password. Returns the user on success, null otherwise. The comparison is
   * constant-time, and unknown names cost as much as known ones.
   */
  async verify(name: string, password: string): Promise<UserSummary | null> {
    await this.refresh();
    const user = this.users.get(name);
    if (user?.hmac !== undefined && this.hmacKey) {
      return safeEqualStrings(hmacHash(this.hmacKey, password), user.hmac) ? summary(user) : null;
    }
    const fingerprint = createHmac("sha256", this.cacheKey).update(name).update("\0").update(password).digest("base64");
    if (user) {
      const cached = this.verified.get(name);
      if (cached !== undefined && cached.until > Date.now() && safeEqualStrings(cached.fingerprint, fingerprint)) return summary(user);
    }
    const salt = user?.scrypt ? Buffer.from(user.scrypt.salt, "base64") : this.dummy.salt;
    const expected = user?.scrypt ? Buffer.from(user.scrypt.hash, "base64") : this.dummy.hash;
    const params = user?.scrypt ?? SCRYPT_PARAMS;
    const actual = await scryptAsync(password, salt, params);
    const ok = actual.length === expected.length && timingSafeEqual(actual, expected);
    if (!ok || !user) return null;
    // The file may have changed while scrypt ran; only cache what is still current.
    if (this.users.get(name) === user) this.verified.set(name, { fingerprint, until: Date.now() + VERIFIED_CACHE_MS });
    return summary(user);
  }

  /**
   * Read the newest file, apply `change`, write it back atomically. A lock file next to it keeps
   * two processes (the hub and the CLI) from losing each other's changes.
   */
  private async modify(change: (users: Map<string, StoredUser>) => void): Promise<void> {
    const run = this.writing.then(async () => {
      await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
      const release = await acquireLock(`${this.file}.lock`);
      try {
        this.fileStamp = ""; // force a re-read: another process may have written since
        await this.refresh();
        const users = new Map(this.users);
        change(users);
        await this.write([...users.values()], this.hmacKey);
        this.users = users;
        this.verified.clear();
        const s = await stat(this.file);
        this.fileStamp = `${s.mtimeMs}:${s.size}:${s.ino}`;
      } finally {
        await release();
      }
    });
    this.writing = run.catch(() => undefined);
    return run;
  }

  private async write(users: StoredUser[], hmacKey: Buffer | undefined): Promise<void> {
    await mkdir(dirname(this.file), { recursive: true, mode: 0o700 });
    const temp = `${this.file}.${process.pid}.${randomBytes(4).toString("hex")}.tmp`;
    const body = JSON.stringify({ version: 1, ...(hmacKey ? { hmacKey: hmacKey.toString("base64") } : {}), users }, null, 2) + "\n";
    const handle = await open(temp, "wx", 0o600);
    try {
      await handle.writeFile(body, "utf8");
      await handle.sync();
    } finally {
      await handle.close();
    }
    try {
      await chmod(temp, 0o600); // in case the umask widened it
      await rename(temp, this.file);
    } catch (err) {
      await unlink(temp).catch(() => undefined);
      throw err;
    }
  }
}

/** A lock older than this is left over from a crashed process and is taken over. */
const STALE_LOCK_MS = 10_000;
const LOCK_WAIT_MS = 5_000;

/** Create `path` exclusively (waiting up to 5 s); the returned function removes it again. */
async function acquireLock(path: string): Promise<() => Promise<void>> {
  const deadline = Date.now() + LOCK_WAIT_MS;
  for (;;) {
    try {
      const handle = await open(path, "wx", 0o600);
      await handle.writeFile(String(process.pid));
      await handle.close();
      return () => unlink(path).catch(() => undefined);
    } catch (err) {
      if ((err as NodeJS.ErrnoException).code !== "EEXIST") throw err;
    }
    const age = await stat(path).then((s) => Date.now() - s.mtimeMs, () => 0);
    if (age > STALE_LOCK_MS) {
      await unlink(path).catch(() => undefined);
      continue;
    }
    if (Date.now() > deadline) {
      throw new CredentialError(`credentials file is locked by another process (${path})`, "retry; if no lockstep command is running, remove the lock file");
    }
    await new Promise((resolve) => setTimeout(resolve, 10 + Math.random() * 20));
  }
}

async function scryptHash(secret: string): Promise<NonNullable<StoredUser["scrypt"]>> {
  const salt = randomBytes(16);
  const hash = await scryptAsync(secret, salt, SCRYPT_PARAMS);
  return { ...SCRYPT_PARAMS, salt: salt.toString("base64"), hash: hash.toString("base64") };
}

function hmacHash(key: Buffer, secret: string): string {
  return createHmac("sha256", key).update(secret).digest("base64");
}

function summary(user: StoredUser): UserSummary {
  return { name: user.name, role: user.role, createdAt: user.createdAt };
}

/** Constant-time string comparison (hashing first makes the lengths equal). */
export function safeEqualStrings(a: string, b: string): boolean {
  const ha = createHash("sha256").update(a).digest();
  const hb = createHash("sha256").update(b).digest();
  return timingSafeEqual(ha, hb);
}

/**
 * Exponential backoff for failed logins, shared by every way in: MQTT CONNECT (embedded broker),
 * the API's Basic auth and the Node-RED editor's login (hub/node-red.ts).
 *
 * Two budgets, checked before any password is verified, so a refused attempt costs no scrypt:
 * - per user name AND remote address: a few free failures, then 1 s, 2 s, 4 s … up to a cap
 *   between attempts. Keyed on the pair on purpose: an attacker guessing the operator's password
 *   from one address never locks the operator out from another (a per-user lock would let anyone
 *   who knows a user name lock that user out).
 * - per remote address: the free failures of all user names from one address together (password
 *   spraying across many names). Failures already slowed down by their pair's backoff do not count,
 *   so one misconfigured agent retrying its wrong password does not use up its network's budget.
 *
 * State is in memory, bounded (the oldest entries go first) and forgotten after a quiet hour.
 */

export interface LoginBackoffOptions {
  /** Failures of one user from one address before it has to wait (default 3). */
  freeFailures?: number;
  /** Free failures from one address, over all user names, before it has to wait (default 30). */
  addressFreeFailures?: number;
  /** The first wait; each further failure doubles it (default 1 s). */
  baseDelayMs?: number;
  /** The longest wait (default 15 min). */
  maxDelayMs?: number;
  /** Failures this long ago are forgotten (default 1 h). */
  forgetAfterMs?: number;
  /** Most entries kept (default 20,000; the oldest are dropped first). */
  maxEntries?: number;
  now?: () => number;
}

export type LoginCheck = { allowed: true } | { allowed: false; retryAfterMs: number; scope: "user" | "address" };

interface Entry {
  failures: number;
  /** No attempt before this time (ms since epoch). */
  until: number;
  lastFailure: number;
}

export class LoginBackoff {
  private readonly free: number;
  private readonly addressFree: number;
  private readonly base: number;
  private readonly max: number;
  private readonly forget: number;
  private readonly maxEntries: number;
  private readonly now: () => number;
  private readonly pairs = new Map<string, Entry>();
  private readonly addresses = new Map<string, Entry>();

  constructor(opts: LoginBackoffOptions = {}) {
    this.free = opts.freeFailures ?? 3;
    this.addressFree = opts.addressFreeFailures ?? 30;
    this.base = opts.baseDelayMs ?? 1_000;
    this.max = opts.maxDelayMs ?? 15 * 60_000;
    this.forget = opts.forgetAfterMs ?? 60 * 60_000;
    this.maxEntries = opts.maxEntries ?? 20_000;
    this.now = opts.now ?? Date.now;
  }

  /** May `user` try a password from `address` now? Call before verifying anything. */
  check(user: string, address: string): LoginCheck {
    const now = this.now();
    const addr = this.current(this.addresses, addressKey(address), now);
    if (addr && addr.until > now) return { allowed: false, retryAfterMs: addr.until - now, scope: "address" };
    const pair = this.current(this.pairs, pairKey(user, address), now);
    if (pair && pair.until > now) return { allowed: false, retryAfterMs: pair.until - now, scope: "user" };
    return { allowed: true };
  }

  /** A wrong password (or unknown user) from `address`. */
  failed(user: string, address: string): void {
    const now = this.now();
    const pair = this.bump(this.pairs, pairKey(user, address), now, this.free);
    // Only the pair's free failures count against the address (see the file comment).
    if (pair.failures <= this.free) this.bump(this.addresses, addressKey(address), now, this.addressFree);
  }

  /** The right password: this user's failures from this address are forgotten (the address's are not). */
  succeeded(user: string, address: string): void {
    this.pairs.delete(pairKey(user, address));
  }

  /** Entries held (for tests and metrics). */
  get size(): number {
    return this.pairs.size + this.addresses.size;
  }

  private current(map: Map<string, Entry>, key: string, now: number): Entry | undefined {
    const entry = map.get(key);
    if (entry && now - entry.lastFailure > this.forget) {
      map.delete(key);
      return undefined;
    }
    return entry;
  }

  private bump(map: Map<string, Entry>, key: string, now: number, free: number): Entry {
    const entry = this.current(map, key, now) ?? { failures: 0, until: 0, lastFailure: now };
    entry.failures++;
    entry.lastFailure = now;
    if (entry.failures > free) entry.until = now + Math.min(this.max, this.base * 2 ** Math.min(30, entry.failures - free - 1));
    map.delete(key); // re-inserted last: the oldest entries are the first to go when full
    map.set(key, entry);
    while (map.size > this.maxEntries) map.delete(map.keys().next().value as string);
    return entry;
  }
}

function pairKey(user: string, address: string): string {
  return `${addressKey(address)}\u0000${user}`;
}

/**
 * One key per source: "::ffff:10.0.0.1" is 10.0.0.1, and an IPv6 address counts as its /64 (one
 * machine usually holds a whole /64, so per-address budgets on single IPv6 addresses would not bind).
 */
export function addressKey(address: string): string {
  const a = address.trim().toLowerCase();
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/.exec(a);
  if (mapped) return mapped[1]!;
  if (!a.includes(":")) return a;
  const [head = "", tail] = a.split("%")[0]!.split("::");
  const left = head === "" ? [] : head.split(":");
  const right = tail === undefined || tail === "" ? [] : tail.split(":");
  const groups = tail === undefined ? left : [...left, ...Array<string>(Math.max(0, 8 - left.length - right.length)).fill("0"), ...right];
  return `${groups.slice(0, 4).map((g) => g.replace(/^0+(?=.)/, "")).join(":")}::/64`;
}

export type BackedOffLogin<U> = { ok: true; user: U } | { ok: false; reason: string; retryAfterMs?: number };

/**
 * The one login rule of every channel: refuse at once while `user` at `address` is backing off
 * (no password check, so a flood costs no scrypt), else verify and count the outcome.
 */
export async function loginWithBackoff<U>(backoff: LoginBackoff, user: string, address: string, verify: () => Promise<U | null>): Promise<BackedOffLogin<U>> {
  const check = backoff.check(user, address);
  if (!check.allowed) {
    const from = check.scope === "address" ? " from this address" : "";
    return { ok: false, reason: `too many failed logins${from}: retry in ${Math.ceil(check.retryAfterMs / 1000)} s`, retryAfterMs: check.retryAfterMs };
  }
  const verified = await verify();
  if (!verified) {
    backoff.failed(user, address);
    return { ok: false, reason: "bad user name or password" };
  }
  backoff.succeeded(user, address);
  return { ok: true, user: verified };
}

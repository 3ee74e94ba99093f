#!/usr/bin/env node
// @ts-check
/**
 * Makes package-lock.json buildable by Nix, once, on a machine that reaches the npm registry.
 *
 * nixpkgs' npm fetchers (fetchNpmDeps behind buildNpmPackage's npmDepsHash, importNpmLock) download
 * each package from the lock's `resolved` address and skip entries without one. This repository's
 * lock has none (it is written with npm's `omit-lockfile-registry-resolved`), so a hash computed
 * from it pins an empty cache. This script:
 *   1. asks the registry for every locked package version without `resolved` and takes its
 *      tarball address, refusing (and writing nothing) if the registry's integrity differs from the
 *      lock's -- the lock's hashes stay the authority;
 *   2. writes the lock back with those addresses;
 *   3. prints the npmDepsHash for nix/package.nix (prefetch-npm-deps, from nixpkgs), or writes it
 *      there with --write.
 *
 *   node scripts/nix-npm-deps.mjs [--lock package-lock.json] [--registry URL] [--write] [--no-hash]
 *
 * Exit codes: 0 done, 1 a registry answer was missing or did not match, 2 usage.
 */
import { readFileSync, writeFileSync, renameSync } from "node:fs";
import { execFileSync } from "node:child_process";
import { dirname, join } from "node:path";

const USAGE = "usage: node scripts/nix-npm-deps.mjs [--lock FILE] [--registry URL] [--write] [--no-hash]\n";
/** Registry requests in flight at once, and how long one may take. */
const CONCURRENCY = 8;
const TIMEOUT_MS = 30_000;
/** npm package names (scoped or not): what may go into a registry URL. */
const PACKAGE_NAME = /^(@[a-z0-9][a-z0-9._~-]*\/)?[a-z0-9][a-z0-9._~-]*$/i;
const VERSION = /^[0-9A-Za-z.+-]+$/;
const SRI = /^sha(1|256|384|512)-[A-Za-z0-9+/]+=*$/;

/**
 * @param {string[]} argv
 * @returns {{ lock: string, registry: string, write: boolean, hash: boolean } | string}
 */
export function parseArgs(argv) {
  const opts = { lock: "package-lock.json", registry: "https://registry.npmjs.org", write: false, hash: true };
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i];
    const value = argv[i + 1];
    if (a === "--lock" && value) (opts.lock = value), i++;
    else if (a === "--registry" && value && /^https?:\/\/\S+$/.test(value)) (opts.registry = value.replace(/\/+$/, "")), i++;
    else if (a === "--write") opts.write = true;
    else if (a === "--no-hash") opts.hash = false;
    else return `unknown or incomplete argument: ${a}`;
  }
  return opts;
}

/**
 * The entries that need an address: registry packages (a version and an integrity, no `resolved`,
 * not a link to a local directory, not bundled inside another package).
 * @param {{ packages?: Record<string, any> }} lock
 * @returns {Array<{ key: string, name: string, version: string, integrity: string }>}
 */
export function missingResolved(lock) {
  const out = [];
  for (const [key, entry] of Object.entries(lock.packages ?? {})) {
    if (key === "" || entry.resolved || entry.link || entry.inBundle || !entry.version || !entry.integrity) continue;
    const name = entry.name ?? key.slice(key.lastIndexOf("node_modules/") + "node_modules/".length);
    if (!PACKAGE_NAME.test(name) || !VERSION.test(entry.version) || !SRI.test(entry.integrity)) throw new Error(`${key}: unexpected name, version or integrity in the lock`);
    out.push({ key, name, version: entry.version, integrity: entry.integrity });
  }
  return out;
}

/**
 * @param {string} registry
 * @param {{ name: string, version: string, integrity: string }} pkg
 * @returns {Promise<string>} the tarball address
 */
async function tarballOf(registry, pkg) {
  const url = `${registry}/${pkg.name.replace("/", "%2f")}/${encodeURIComponent(pkg.version)}`;
  const res = await fetch(url, { headers: { accept: "application/json" }, signal: AbortSignal.timeout(TIMEOUT_MS) });
  if (!res.ok) throw new Error(`${pkg.name}@${pkg.version}: the registry answered ${res.status} for ${url}`);
  const body = /** @type {{ dist?: { tarball?: unknown, integrity?: unknown } }} */ (await res.json());
  const { tarball, integrity } = body.dist ?? {};
  if (typeof tarball !== "string" || !/^https?:\/\/\S+$/.test(tarball)) throw new Error(`${pkg.name}@${pkg.version}: the registry gave no tarball address`);
  if (integrity !== pkg.integrity) throw new Error(`${pkg.name}@${pkg.version}: the registry's integrity ${String(integrity)} is not the lock's ${pkg.integrity}; nothing was written`);
  return tarball;
}

/**
 * Fills `resolved` in place; every answer is checked before anything is changed.
 * @param {{ packages?: Record<string, any> }} lock
 * @param {string} registry
 * @returns {Promise<number>} how many entries were filled
 */
export async function addResolved(lock, registry) {
  const todo = missingResolved(lock);
  /** @type {Map<string, string>} */
  const found = new Map();
  let next = 0;
  const worker = async () => {
    while (next < todo.length) {
      const pkg = /** @type {typeof todo[number]} */ (todo[next++]);
      found.set(pkg.key, await tarballOf(registry, pkg));
    }
  };
  await Promise.all(Array.from({ length: Math.min(CONCURRENCY, todo.length) }, worker));
  for (const pkg of todo) {
    const entry = /** @type {Record<string, unknown>} */ (lock.packages?.[pkg.key]);
    // npm's own order: version, resolved, integrity, ...
    const { version, ...rest } = entry;
    /** @type {any} */ (lock.packages)[pkg.key] = { version, resolved: found.get(pkg.key), ...rest };
  }
  return todo.length;
}

/** @param {string} lockPath */
function prefetchHash(lockPath) {
  // prefetch-npm-deps comes from nixpkgs: the same code fetchNpmDeps runs, so the hash matches.
  const out = execFileSync("nix", ["--extra-experimental-features", "nix-command flakes", "shell", "nixpkgs#prefetch-npm-deps", "-c", "prefetch-npm-deps", lockPath], { encoding: "utf8", stdio: ["ignore", "pipe", "inherit"] });
  const hash = out.trim().split("\n").pop() ?? "";
  if (!/^sha256-[A-Za-z0-9+/]{43}=$/.test(hash)) throw new Error(`prefetch-npm-deps printed no hash: ${out.slice(0, 200)}`);
  return hash;
}

/** @param {string} packageNix @param {string} hash */
function writeHash(packageNix, hash) {
  const text = readFileSync(packageNix, "utf8");
  const updated = text.replace(/npmDepsHash = [^;]+;/, `npmDepsHash = "${hash}";`);
  if (updated === text && !text.includes(`npmDepsHash = "${hash}";`)) throw new Error(`${packageNix} has no npmDepsHash line to update`);
  writeFileSync(packageNix, updated);
}

/** @param {string[]} argv */
export async function main(argv) {
  const opts = parseArgs(argv);
  if (typeof opts === "string") {
    process.stderr.write(`${opts}\n${USAGE}`);
    return 2;
  }
  try {
    const lock = JSON.parse(readFileSync(opts.lock, "utf8"));
    const filled = await addResolved(lock, opts.registry);
    const tmp = `${opts.lock}.${process.pid}.tmp`;
    writeFileSync(tmp, JSON.stringify(lock, null, 2) + "\n");
    renameSync(tmp, opts.lock);
    process.stdout.write(`${opts.lock}: added ${filled} download address(es)\n`);
    if (!opts.hash) return 0;
    const hash = prefetchHash(opts.lock);
    if (opts.write) {
      const packageNix = join(dirname(opts.lock), "nix", "package.nix");
      writeHash(packageNix, hash);
      process.stdout.write(`${packageNix}: npmDepsHash = "${hash}";\n`);
    } else process.stdout.write(`npmDepsHash = "${hash}";   # put this in nix/package.nix (or rerun with --write)\n`);
    return 0;
  } catch (e) {
    process.stderr.write(`nix-npm-deps: ${/** @type {Error} */ (e).message}\n`);
    return 1;
  }
}

if (import.meta.url === `file://${process.argv[1]}`) process.exitCode = await main(process.argv.slice(2));

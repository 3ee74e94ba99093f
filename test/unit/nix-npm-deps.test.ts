/**
 * scripts/nix-npm-deps.mjs, run as a user runs it, against a stand-in npm registry on a free local
 * port: it adds the download addresses nixpkgs' npm fetchers need, and writes nothing when the
 * registry's integrity disagrees with the lock.
 */
import { describe, it, expect, beforeAll, afterAll } from "vitest";
import { execFile } from "node:child_process";
import { createServer, type Server } from "node:http";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import type { AddressInfo } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";

const SCRIPT = join(__dirname, "..", "..", "scripts", "nix-npm-deps.mjs");
const dir = mkdtempSync(join(tmpdir(), "lockstep-npm-deps-"));
const requests: string[] = [];
let server: Server;
let registry = "";

/** name@version -> integrity the stand-in registry reports. */
const published: Record<string, string> = {
  "zod@4.1.0": "sha512-zod",
  "@octokit/rest@22.0.1": "sha512-octokit",
  "string-width@4.2.3": "sha512-sw4",
};

beforeAll(async () => {
  server = createServer((req, res) => {
    requests.push(req.url ?? "");
    const m = /^\/(.+)\/([^/]+)$/.exec(req.url ?? "");
    const name = decodeURIComponent(m?.[1] ?? "");
    const version = decodeURIComponent(m?.[2] ?? "");
    const integrity = published[`${name}@${version}`];
    if (!integrity) return void res.writeHead(404).end("{}");
    const base = name.split("/").pop();
    res.writeHead(200, { "content-type": "application/json" }).end(JSON.stringify({ name, version, dist: { integrity, tarball: `${registry}/${name}/-/${base}-${version}.tgz` } }));
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  registry = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
});
afterAll(async () => {
  await new Promise((resolve) => server.close(resolve));
  rmSync(dir, { recursive: true, force: true });
});

function run(args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(process.execPath, [SCRIPT, ...args], { encoding: "utf8" }, (err, stdout, stderr) => resolve({ code: err ? Number(err.code) : 0, stdout, stderr }));
  });
}

function lockFile(name: string, packages: Record<string, object>): string {
  const file = join(dir, name);
  writeFileSync(file, JSON.stringify({ name: "x", lockfileVersion: 3, requires: true, packages: { "": { name: "x" }, ...packages } }, null, 2) + "\n");
  return file;
}

describe("scripts/nix-npm-deps.mjs", () => {
  it("adds each registry package's tarball address, checked against the lock's integrity", async () => {
    const file = lockFile("ok.json", {
      "node_modules/zod": { version: "4.1.0", integrity: "sha512-zod", license: "MIT" },
      "node_modules/@octokit/rest": { version: "22.0.1", integrity: "sha512-octokit" },
      // A nested copy of another version, an alias (npm:string-width@4), a workspace link and a bundled dependency.
      "node_modules/cliui/node_modules/string-width": { version: "4.2.3", integrity: "sha512-sw4" },
      "node_modules/string-width-cjs": { name: "string-width", version: "4.2.3", integrity: "sha512-sw4" },
      "node_modules/local": { resolved: "packages/local", link: true },
      "node_modules/npm/node_modules/abbrev": { version: "1.0.0", inBundle: true },
      "node_modules/already": { version: "1.0.0", resolved: "https://example.invalid/already-1.0.0.tgz", integrity: "sha512-x" },
    });
    requests.length = 0;
    const r = await run(["--lock", file, "--registry", registry, "--no-hash"]);
    expect(r).toMatchObject({ code: 0, stdout: `${file}: added 4 download address(es)\n` });
    const lock = JSON.parse(readFileSync(file, "utf8"));
    expect(lock.packages["node_modules/zod"]).toEqual({ version: "4.1.0", resolved: `${registry}/zod/-/zod-4.1.0.tgz`, integrity: "sha512-zod", license: "MIT" });
    expect(Object.keys(lock.packages["node_modules/zod"])).toEqual(["version", "resolved", "integrity", "license"]);
    expect(lock.packages["node_modules/@octokit/rest"].resolved).toBe(`${registry}/@octokit/rest/-/rest-22.0.1.tgz`);
    expect(lock.packages["node_modules/string-width-cjs"].resolved).toBe(`${registry}/string-width/-/string-width-4.2.3.tgz`);
    expect(lock.packages["node_modules/local"]).toEqual({ resolved: "packages/local", link: true });
    expect(lock.packages["node_modules/npm/node_modules/abbrev"].resolved).toBeUndefined();
    expect(lock.packages["node_modules/already"].resolved).toBe("https://example.invalid/already-1.0.0.tgz");
    // Scoped names are asked for as @scope%2fname, one request per entry.
    expect(requests.sort()).toEqual(["/@octokit%2frest/22.0.1", "/string-width/4.2.3", "/string-width/4.2.3", "/zod/4.1.0"]);
  });

  it("writes nothing when the registry's integrity differs from the lock's, or a version is missing", async () => {
    const mismatch = lockFile("mismatch.json", {
      "node_modules/zod": { version: "4.1.0", integrity: "sha512-zod" },
      "node_modules/@octokit/rest": { version: "22.0.1", integrity: "sha512-tampered" },
    });
    const before = readFileSync(mismatch, "utf8");
    const r = await run(["--lock", mismatch, "--registry", registry, "--no-hash"]);
    expect(r.code).toBe(1);
    expect(r.stderr).toContain("@octokit/rest@22.0.1: the registry's integrity sha512-octokit is not the lock's sha512-tampered; nothing was written");
    expect(readFileSync(mismatch, "utf8")).toBe(before);
    const unpublished = lockFile("missing.json", { "node_modules/ghost": { version: "9.9.9", integrity: "sha512-ghost" } });
    expect(await run(["--lock", unpublished, "--registry", registry, "--no-hash"])).toMatchObject({ code: 1, stderr: expect.stringContaining("ghost@9.9.9: the registry answered 404") });
  });

  it("refuses odd lock entries and unknown arguments", async () => {
    const odd = lockFile("odd.json", { "node_modules/x": { name: "../../etc", version: "1.0.0", integrity: "sha512-x" } });
    expect(await run(["--lock", odd, "--registry", registry, "--no-hash"])).toMatchObject({ code: 1, stderr: expect.stringContaining("unexpected name, version or integrity") });
    expect(await run(["--registry", "file:///etc"])).toMatchObject({ code: 2, stderr: expect.stringContaining("unknown or incomplete argument: --registry") });
  });
});

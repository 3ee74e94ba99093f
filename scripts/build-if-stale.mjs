// Build only when something the build reads is newer than the last build, so `npm run hub` / demo /
// bench start in a second on an unchanged tree instead of spending 10–17 s in tsc.
// Inputs: tsconfig.json's "include" folders, the asset folders copy-assets.mjs copies, and the files
// that change what tsc emits. A file added, deleted or renamed changes the list of inputs, which the
// stamp records; generated/ folders are outputs (dashboard/generated is written by the build itself).
// `--force` builds regardless; LOCKSTEP_ALWAYS_BUILD=1 does the same.
import { execFileSync } from "node:child_process";
import { createHash } from "node:crypto";
import { existsSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const STAMP = join("dist", ".build-stamp");
const tsconfig = JSON.parse(readFileSync("tsconfig.json", "utf8"));
const roots = [...new Set([...(tsconfig.include ?? []), "flows", "dashboard", "node-red-nodes"])];
const files = ["tsconfig.json", "package.json", "package-lock.json", "scripts/copy-assets.mjs", "scripts/build-page.mjs", "scripts/build-if-stale.mjs"];

/** Every input file below a path (node_modules, dist and generated/ are not inputs). */
function inputs(path, out = []) {
  if (!existsSync(path)) return out;
  if (!statSync(path).isDirectory()) {
    out.push(path);
    return out;
  }
  for (const name of readdirSync(path).sort()) {
    if (name === "node_modules" || name === "dist" || name === "generated") continue;
    inputs(join(path, name), out);
  }
  return out;
}

const force = process.argv.includes("--force") || process.env.LOCKSTEP_ALWAYS_BUILD === "1";
const all = [...roots, ...files].flatMap((p) => inputs(p));
const listHash = createHash("sha256").update(all.join("\n")).digest("hex");
const newest = Math.max(...all.map((f) => statSync(f).mtimeMs));
const stamp = existsSync(STAMP) ? { at: statSync(STAMP).mtimeMs, list: readFileSync(STAMP, "utf8").trim() } : undefined;
if (!force && stamp && stamp.at > newest && stamp.list === listHash) {
  process.exit(0);
}
const started = Date.now();
execFileSync("npm", ["run", "build", "--silent"], { stdio: "inherit" });
// The stamp carries the time the build started: a source saved during the build is still newer.
writeFileSync(STAMP, `${listHash}\n`);
utimesSync(STAMP, started / 1000, started / 1000);
console.log(`build: compiled in ${((Date.now() - started) / 1000).toFixed(1)} s`);

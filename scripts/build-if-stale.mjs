// Build only when something the build reads is newer than the last build, so `npm run hub` / demo /
// bench start in a second on an unchanged tree instead of spending 10–17 s in tsc.
// Inputs: tsconfig.json's "include" folders, the asset folders copy-assets.mjs copies, and the files
// that change what tsc emits. Directory mtimes count too (a deleted source file changes its folder);
// generated/ folders are outputs (dashboard/generated is written by the build itself).
// `--force` builds regardless; LOCKSTEP_ALWAYS_BUILD=1 does the same.
import { execFileSync } from "node:child_process";
import { existsSync, readFileSync, readdirSync, statSync, utimesSync, writeFileSync } from "node:fs";
import { join } from "node:path";

const STAMP = join("dist", ".build-stamp");
const tsconfig = JSON.parse(readFileSync("tsconfig.json", "utf8"));
const roots = [...new Set([...(tsconfig.include ?? []), "flows", "dashboard", "node-red-nodes"])];
const files = ["tsconfig.json", "package.json", "package-lock.json", "scripts/copy-assets.mjs", "scripts/build-page.mjs", "scripts/build-if-stale.mjs"];

/** Newest mtime (ms) of a file or folder tree; node_modules and dist are not inputs. */
function newest(path) {
  if (!existsSync(path)) return 0;
  const st = statSync(path);
  if (!st.isDirectory()) return st.mtimeMs;
  let max = st.mtimeMs;
  for (const name of readdirSync(path)) {
    if (name === "node_modules" || name === "dist" || name === "generated") continue;
    max = Math.max(max, newest(join(path, name)));
  }
  return max;
}

const force = process.argv.includes("--force") || process.env.LOCKSTEP_ALWAYS_BUILD === "1";
const built = existsSync(STAMP) ? statSync(STAMP).mtimeMs : 0;
const sources = Math.max(...roots.map(newest), ...files.map(newest));
if (!force && built > sources) {
  process.exit(0);
}
const started = Date.now();
execFileSync("npm", ["run", "build", "--silent"], { stdio: "inherit" });
// The stamp carries the time the build started: a source saved during the build is still newer.
writeFileSync(STAMP, `${new Date(started).toISOString()}\n`);
utimesSync(STAMP, started / 1000, started / 1000);
console.log(`build: compiled in ${((Date.now() - started) / 1000).toFixed(1)} s`);

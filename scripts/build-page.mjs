// Builds the fleet page's protocol module: protocol/page.ts and what it imports, bundled by esbuild
// into one browser ES module (dashboard/generated/protocol.js, not in git). The page imports topics,
// enums, final rollout states and the lock-diff rows from it, so they cannot drift from protocol/.
// Used by `npm run build` (then copied to dist/ with the other page files) and by the tests'
// global setup. Fails if the bundle would pull in anything outside protocol/ (zod, Node modules).
import { build } from "esbuild";
import { mkdirSync, renameSync, writeFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";

const ROOT = resolve(dirname(fileURLToPath(import.meta.url)), "..");
export const PAGE_PROTOCOL_OUT = join(ROOT, "dashboard", "generated", "protocol.js");

export async function buildPageProtocol(outFile = PAGE_PROTOCOL_OUT) {
  const result = await build({
    absWorkingDir: ROOT,
    entryPoints: ["protocol/page.ts"],
    bundle: true,
    format: "esm",
    platform: "browser",
    target: "es2022",
    write: false,
    metafile: true,
    legalComments: "none",
    banner: { js: "// Generated from protocol/ by scripts/build-page.mjs: do not edit.\n" },
    logLevel: "silent",
  });
  const outside = Object.keys(result.metafile.inputs).filter((p) => !p.startsWith("protocol/"));
  if (outside.length) throw new Error(`the page's protocol module would bundle files outside protocol/: ${outside.join(", ")}`);
  mkdirSync(dirname(outFile), { recursive: true });
  // Write then rename: a test run reading the file never sees half of it.
  const tmp = `${outFile}.${process.pid}.tmp`;
  writeFileSync(tmp, result.outputFiles[0].contents);
  renameSync(tmp, outFile);
  return { outFile, inputs: Object.keys(result.metafile.inputs) };
}

if (process.argv[1] && resolve(process.argv[1]) === fileURLToPath(import.meta.url)) {
  const { outFile, inputs } = await buildPageProtocol();
  console.log(`page protocol module: ${relative(ROOT, outFile)} from ${inputs.length} files in protocol/`);
}

/** vitest globalSetup: the page's tests serve the module from the source tree. */
export async function setup() {
  await buildPageProtocol();
}

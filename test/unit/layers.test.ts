/**
 * The folders import downward only: protocol ← broker/agent/github/rollout ← ha/node-red-nodes/dashboard
 * ← hub. A folder may import from its own layer's neighbours, but two folders never import each
 * other. Read from the source, so a new upward import fails here before review.
 */
import { mkdirSync, mkdtempSync, readdirSync, readFileSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, relative, resolve } from "node:path";
import { describe, expect, it } from "vitest";

const ROOT = resolve(__dirname, "..", "..");

/** Higher numbers sit higher: a file may import from its own layer or any lower one. */
export const LAYERS: Record<string, number> = {
  protocol: 0,
  broker: 1,
  agent: 1,
  github: 1,
  rollout: 1,
  ha: 2,
  "node-red-nodes": 2,
  // The page's server side is served by the hub.
  dashboard: 2,
  hub: 3,
};

function sourceFiles(dir: string): string[] {
  const out: string[] = [];
  for (const name of readdirSync(dir)) {
    const path = join(dir, name);
    if (statSync(path).isDirectory()) {
      if (name === "node_modules" || name === "generated") continue;
      out.push(...sourceFiles(path));
    } else if (/\.(ts|mjs|js)$/.test(name) && !name.endsWith(".d.ts")) out.push(path);
  }
  return out;
}

/** Every relative import / require / dynamic import in a file, as the folder it lands in. */
export function importedFolders(file: string, root = ROOT): Array<{ spec: string; folder: string }> {
  const text = readFileSync(file, "utf8");
  const specs = [...text.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*|^import\s+)["'](\.{1,2}\/[^"']+)["']/gm)].map((m) => m[1]!);
  return specs.map((spec) => ({ spec, folder: relative(root, resolve(dirname(file), spec)).split(/[\\/]/)[0]! }));
}

/** Upward imports and pairs of folders importing each other. */
export function layerViolations(root = ROOT): string[] {
  const problems: string[] = [];
  const edges = new Map<string, Set<string>>();
  for (const folder of Object.keys(LAYERS)) {
    let files: string[] = [];
    try {
      files = sourceFiles(join(root, folder));
    } catch {
      continue; // a tree without this folder
    }
    for (const file of files) {
      for (const { spec, folder: target } of importedFolders(file, root)) {
        if (target === folder || !(target in LAYERS)) continue;
        if (LAYERS[target]! > LAYERS[folder]!) problems.push(`${relative(root, file)} imports ${spec}: ${folder} must not import ${target} (a higher layer)`);
        if (!edges.has(folder)) edges.set(folder, new Set());
        edges.get(folder)!.add(target);
      }
    }
  }
  for (const [from, tos] of edges) {
    for (const to of tos) if (from < to && edges.get(to)?.has(from)) problems.push(`${from} and ${to} import each other`);
  }
  return problems;
}

/** Node modules that read or write files, run programs or talk to the network. */
const IO_MODULES = /^(?:node:)?(?:fs|fs\/promises|child_process|net|tls|dgram|http|https|http2|worker_threads)$/;
/** protocol/'s one piece of I/O: reading config and secret files. */
const PROTOCOL_IO_ALLOWED = new Set(["protocol/config-file.ts"]);

/** protocol/ files (other than config-file.ts) that import an I/O module: protocol/ is the contract, topics and payloads. */
export function protocolIo(root = ROOT): string[] {
  let files: string[] = [];
  try {
    files = sourceFiles(join(root, "protocol"));
  } catch {
    return [];
  }
  const problems: string[] = [];
  for (const file of files) {
    const name = relative(root, file).split(/[\\/]/).join("/");
    if (PROTOCOL_IO_ALLOWED.has(name)) continue;
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/(?:from\s+|import\s*\(\s*|require\s*\(\s*|^import\s+)["']([^"']+)["']/gm)) {
      if (IO_MODULES.test(m[1]!)) problems.push(`${name} imports ${m[1]}: protocol/ does no I/O (put it in the layer that uses it)`);
    }
  }
  return problems;
}

describe("layers", () => {
  it("no folder imports a higher layer, and no two folders import each other", () => {
    expect(layerViolations()).toEqual([]);
  });

  it("protocol/ does no I/O but config-file.ts's reading of config files", () => {
    expect(protocolIo()).toEqual([]);
  });

  it("reports a protocol/ file that imports an I/O module (so the check can fail)", () => {
    const root = mkdtempSync(join(tmpdir(), "lockstep-layers-"));
    try {
      mkdirSync(join(root, "protocol"));
      writeFileSync(join(root, "protocol", "config-file.ts"), 'import { readFileSync } from "node:fs";\n');
      writeFileSync(join(root, "protocol", "ids.ts"), 'import { randomUUID } from "node:crypto";\n');
      writeFileSync(join(root, "protocol", "writer.ts"), 'import { writeFileSync } from "node:fs";\nconst cp = require("child_process");\n');
      expect(protocolIo(root)).toEqual([
        "protocol/writer.ts imports node:fs: protocol/ does no I/O (put it in the layer that uses it)",
        "protocol/writer.ts imports child_process: protocol/ does no I/O (put it in the layer that uses it)",
      ]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });

  it("sees relative imports, requires and dynamic imports (so the check can fail)", () => {
    const found = importedFolders(join(ROOT, "hub", "start.ts")).map((i) => i.folder);
    expect(found).toEqual(expect.arrayContaining(["protocol", "broker", "ha", "hub"]));
  });

  it("reports an upward import and two folders importing each other", () => {
    const root = mkdtempSync(join(tmpdir(), "lockstep-layers-"));
    try {
      const write = (path: string, text: string) => {
        mkdirSync(dirname(join(root, path)), { recursive: true });
        writeFileSync(join(root, path), text);
      };
      write("protocol/a.ts", 'import { x } from "../rollout/b.js";\n');
      write("rollout/b.ts", 'export const x = 1;\n');
      write("ha/c.ts", 'import type { Y } from "../node-red-nodes/d.js";\n');
      write("node-red-nodes/d.ts", 'const y = require("../ha/c.js");\n');
      expect(layerViolations(root)).toEqual([
        "protocol/a.ts imports ../rollout/b.js: protocol must not import rollout (a higher layer)",
        "ha and node-red-nodes import each other",
      ]);
    } finally {
      rmSync(root, { recursive: true, force: true });
    }
  });
});

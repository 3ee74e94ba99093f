/**
 * The fleet page's protocol module is generated from protocol/ (scripts/build-page.mjs): these
 * tests check that it bundles nothing but protocol/ (no zod, no Node modules), that it exports
 * every name the page's modules import from it, and that the page's own module graph resolves
 * (every relative import names a file and an export that exist), so a split or a rename that
 * breaks the page fails here, before a browser is started.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join, resolve } from "node:path";
import { pathToFileURL } from "node:url";
import { afterAll, describe, expect, it } from "vitest";
import { buildPageProtocol } from "../../scripts/build-page.mjs";
import * as protocol from "../../protocol/index.js";

const DASHBOARD = resolve(__dirname, "../../dashboard");
const pageFiles = [join(DASHBOARD, "app.js"), ...readdirSync(join(DASHBOARD, "modules")).filter((f) => f.endsWith(".js")).map((f) => join(DASHBOARD, "modules", f))];
const out = mkdtempSync(join(tmpdir(), "page-protocol-"));
afterAll(() => rmSync(out, { recursive: true, force: true }));

/** `import { a, b as c } from "x"` → [{ from: "x", names: ["a", "b"] }] (the page uses no other import forms but default mqtt). */
function namedImports(source: string): { from: string; names: string[] }[] {
  return [...source.matchAll(/^import\s*\{([^}]*)\}\s*from\s*"([^"]+)";/gm)].map((m) => ({
    from: m[2]!,
    names: m[1]!.split(",").map((n) => n.trim().split(/\s+as\s+/)[0]!).filter(Boolean),
  }));
}

const exportedNames = (source: string) => new Set([...source.matchAll(/^export\s+(?:async\s+)?(?:function|const|let|class)\s+([A-Za-z_$][\w$]*)/gm)].map((m) => m[1]!));

describe("the page's protocol module (generated from protocol/)", () => {
  it("bundles only files from protocol/, and no zod", async () => {
    const { outFile, inputs } = await buildPageProtocol(join(out, "protocol.js"));
    expect(inputs.length).toBeGreaterThan(0);
    for (const input of inputs) expect(input).toMatch(/^protocol\/[\w-]+\.ts$/);
    expect(readFileSync(outFile, "utf8")).not.toMatch(/zod|require\(|node:/);
  });

  it("exports every name the page imports from it, with protocol/'s values", async () => {
    const mod = (await import(pathToFileURL(join(out, "protocol.js")).href)) as Record<string, unknown>;
    const used = new Set<string>();
    for (const file of pageFiles) {
      for (const imp of namedImports(readFileSync(file, "utf8"))) if (imp.from.endsWith("generated/protocol.js")) imp.names.forEach((n) => used.add(n));
    }
    expect(used.size).toBeGreaterThan(5);
    for (const name of used) expect(mod[name], name).toBeDefined();
    // Same definitions, not copies: enumerations equal protocol/'s, topics build the same strings.
    const p = protocol as unknown as Record<string, unknown>;
    for (const name of ["STATUSES", "COMPARTMENTS", "TERMINAL_JOB_STATES", "FINAL_ROLLOUT_STATES", "ROLLOUT_STATES"]) expect(mod[name], name).toEqual(p[name]);
    const Topics = mod.Topics as typeof protocol.Topics;
    expect(new Topics("site/a").compartment("web-1", "lock")).toBe(new protocol.Topics("site/a").compartment("web-1", "lock"));
    expect(new Topics().parse(new protocol.Topics().hubStatus())).toEqual({ kind: "hubStatus" });
  });

  it("the page's modules import one another without cycles", () => {
    const graph = new Map<string, string[]>();
    for (const file of pageFiles) {
      const deps = namedImports(readFileSync(file, "utf8")).filter((i) => i.from.startsWith(".") && !i.from.endsWith("generated/protocol.js"));
      graph.set(file, deps.map((i) => resolve(dirname(file), i.from)));
    }
    const cycles: string[] = [];
    const visit = (file: string, path: string[]) => {
      for (const dep of graph.get(file) ?? []) {
        if (path.includes(dep)) cycles.push([...path.slice(path.indexOf(dep)), dep].map((f) => f.slice(DASHBOARD.length + 1)).join(" → "));
        else visit(dep, [...path, dep]);
      }
    };
    for (const file of pageFiles) visit(file, [file]);
    expect(cycles).toEqual([]);
  });

  it("the page's modules import only files and names that exist", () => {
    for (const file of pageFiles) {
      for (const imp of namedImports(readFileSync(file, "utf8"))) {
        if (!imp.from.startsWith(".") || imp.from.endsWith("generated/protocol.js")) continue;
        const target = resolve(dirname(file), imp.from);
        const exported = exportedNames(readFileSync(target, "utf8"));
        for (const name of imp.names) expect(exported.has(name), `${name} from ${imp.from} in ${file}`).toBe(true);
      }
    }
  });
});

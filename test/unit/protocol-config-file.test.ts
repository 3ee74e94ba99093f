import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, expect, it } from "vitest";
import { ConfigError, readConfigFile, readSecretFile } from "../../protocol/index.js";

const dir = mkdtempSync(join(tmpdir(), "lockstep-config-file-"));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("config files", () => {
  it("reads a secret without its trailing newline and never puts the value in an error", () => {
    writeFileSync(join(dir, "token"), "ghp_secret-value\n");
    expect(readSecretFile(join(dir, "token"), "GitHub token")).toBe("ghp_secret-value");
    writeFileSync(join(dir, "empty"), "\n");
    expect(() => readSecretFile(join(dir, "empty"), "GitHub token")).toThrow(/GitHub token file .*empty is empty/);
    const err = (() => {
      try {
        readSecretFile(join(dir, "missing"), "bridge password");
      } catch (e) {
        return e;
      }
    })();
    expect(err).toBeInstanceOf(ConfigError);
    expect((err as Error).message).toMatch(/cannot read the bridge password file .*missing: ENOENT/);
  });

  it("reads a JSON object and names the file when it is not one", () => {
    writeFileSync(join(dir, "ok.json"), '{"a":1}');
    expect(readConfigFile(join(dir, "ok.json"))).toEqual({ a: 1 });
    writeFileSync(join(dir, "list.json"), "[1]");
    expect(() => readConfigFile(join(dir, "list.json"))).toThrow(/list\.json must hold a JSON object/);
    writeFileSync(join(dir, "bad.json"), "{");
    expect(() => readConfigFile(join(dir, "bad.json"))).toThrow(/bad\.json is not valid JSON/);
    expect(() => readConfigFile(join(dir, "nope.json"))).toThrow(/cannot read config file .*nope\.json: ENOENT/);
  });
});

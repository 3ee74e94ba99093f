import { mkdirSync, mkdtempSync, readFileSync, statSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { StorageFile } from "../../hub/storage-file.js";

function recorder() {
  const reports: string[] = [];
  const faults: string[] = [];
  return {
    reports,
    faults,
    storage: { ok: () => void reports.push("ok"), failed: (err: unknown, path: string) => void reports.push(`failed ${(err as NodeJS.ErrnoException).code} ${path}`) },
    onFault: (err: unknown) => void faults.push((err as NodeJS.ErrnoException).code ?? "?"),
  };
}

describe("StorageFile, hub/storage-file.ts (a data-dir file that keeps what it could not write)", () => {
  it("writes the text whole with mode 0600 and reports ok", () => {
    const path = join(mkdtempSync(join(tmpdir(), "lockstep-storage-file-")), "state.json");
    const r = recorder();
    const file = new StorageFile({ path, storage: r.storage, onFault: r.onFault });
    expect(file.write("one\n")).toBe(true);
    expect(file.write("two\n")).toBe(true);
    expect(readFileSync(path, "utf8")).toBe("two\n");
    expect(statSync(path).mode & 0o777).toBe(0o600);
    expect(r.reports).toEqual(["ok", "ok"]);
    expect(r.faults).toEqual([]);
  });

  it("keeps the newest unwritten text, tells onFault once per fault, and retry() writes it when the dir can be written", () => {
    const dir = join(mkdtempSync(join(tmpdir(), "lockstep-storage-file-")), "not-yet");
    const path = join(dir, "state.json");
    const r = recorder();
    const file = new StorageFile({ path, storage: r.storage, onFault: r.onFault });
    expect(file.write("first\n")).toBe(false);
    expect(file.write("newest\n")).toBe(false);
    file.retry();
    expect(r.faults).toEqual(["ENOENT"]);
    expect(r.reports).toEqual([`failed ENOENT ${path}`, `failed ENOENT ${path}`, `failed ENOENT ${path}`]);

    mkdirSync(dir);
    file.retry();
    expect(readFileSync(path, "utf8")).toBe("newest\n");
    expect(r.reports.at(-1)).toBe("ok");
    // Nothing kept now: a retry only reports ok and does not write again.
    file.retry();
    expect(r.reports.at(-1)).toBe("ok");

    // A later fault is a new one: told again.
    const blocked = new StorageFile({ path: join(dir, "missing", "x.json"), storage: r.storage, onFault: r.onFault });
    blocked.write("a");
    expect(r.faults).toEqual(["ENOENT", "ENOENT"]);
  });
});

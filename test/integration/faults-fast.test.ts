/**
 * The fault matrix's fast rows (`npm run faults -- --fast`), each on real parts: GitHub faults,
 * lock bombs, hostile commands to a real agent, broker session and packet limits, login floods
 * against a hub process. The slow rows and the soak run by hand. Needs `npm run build`.
 */
import { afterAll, describe, expect, it } from "vitest";
import { closeShared } from "../faults/row.js";
import { runRow, selectRows } from "../faults/run.js";

describe("fault matrix: fast rows", () => {
  afterAll(() => closeShared(), 60_000);
  for (const row of selectRows({ fast: true, only: [] })) {
    it(`${row.name}: ${row.expected}`, async () => {
      const result = await runRow(row);
      expect(result.pass, `${row.scenario}\nobserved: ${result.observed}`).toBe(true);
    }, (row.timeoutMs ?? 90_000) + 30_000);
  }
});

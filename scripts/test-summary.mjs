// Prints the one closing line CI reads ("Tests: N passed, N failed, N skipped") from vitest's JSON report.
import { readFileSync } from "node:fs";
const file = process.argv[2] ?? "test-results/vitest.json";
try {
  const r = JSON.parse(readFileSync(file, "utf8"));
  // Everything that neither passed nor failed (skipped or marked for later) counts as not run.
  const notRun = r.numTotalTests - r.numPassedTests - r.numFailedTests;
  console.log(`Tests: ${r.numPassedTests} passed, ${r.numFailedTests} failed, ${notRun} skipped`);
} catch (e) {
  console.log(`Tests: 0 passed, 1 failed (no report at ${file}: ${e.message})`);
}

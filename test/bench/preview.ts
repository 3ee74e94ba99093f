/**
 * Preview benchmark: how long the test fleet's lock update takes to preview (real git, real Nix)
 * for its three versioned hosts, evaluation only and with builds, and what one diff-closures costs.
 * The fixture's first build of the current systems is not counted.
 *
 *   node dist/test/bench/run.js preview
 */
import { execFileSync } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { PreviewRunner, type PreviewTarget } from "../../agent/preview.js";
import { PreviewArgs, REBOOT_COMPONENTS } from "../../protocol/index.js";
import { nixEnv } from "../fleet/nix-env.js";
import { createPreviewFixture, PREVIEW_HOSTS, systemAttr } from "../fleet/preview-fixture.js";

export async function benchPreview(): Promise<Record<string, number>> {
  const root = mkdtempSync(join(tmpdir(), "lockstep-bench-preview-"));
  try {
    const f = createPreviewFixture(root, 1);
    const runner = new PreviewRunner({
      checkoutDir: f.checkout,
      branch: "main",
      workRoot: join(root, "previews"),
      env: nixEnv(),
      stepTimeoutMs: 300_000,
      builtOn: "alpha",
      rebootComponents: REBOOT_COMPONENTS,
    });
    const targets: PreviewTarget[] = PREVIEW_HOSTS.map((h) => ({ host: h, attr: systemAttr(h), currentSystem: f.current[h]!, dryActivate: h === "alpha" }));
    const args = PreviewArgs.parse({ pr: f.pr, headSha: f.update });
    let t = performance.now();
    await runner.run(args, false, targets);
    const evalOnly = performance.now() - t;
    t = performance.now();
    const results = await runner.run(args, true, targets);
    const withBuild = performance.now() - t;
    const newAlpha = results.find((r) => r.host === "alpha")!.newSystem!;
    t = performance.now();
    execFileSync("nix", ["store", "diff-closures", f.current.alpha!, newAlpha], { env: nixEnv(), stdio: "ignore" });
    const diff = performance.now() - t;
    return {
      "hosts previewed": PREVIEW_HOSTS.length,
      "evaluate only, 3 hosts (ms)": Math.round(evalOnly),
      "evaluate + build + diff, 3 hosts (ms)": Math.round(withBuild),
      "one diff-closures (ms)": Math.round(diff),
    };
  } finally {
    rmSync(root, { recursive: true, force: true });
  }
}

/**
 * `preview {pr, headSha, build?, forHosts?}`: what merging the PR would do here (and, on a host
 * with the `builder` tag, to the hosts in forHosts). The work is agent/preview.ts; this op picks
 * the targets, ties `stop` to the preview, and publishes each host's result, retained, under this
 * host (hosts/<self>/previews/<pr>/<host>) for the hub to check and republish. Never touches the
 * live checkout, the profile or the running system.
 */
import { realpathSync } from "node:fs";
import { join } from "node:path";
import { Topics, REBOOT_COMPONENTS, type CommandOf } from "../../protocol/index.js";
import type { AgentContext } from "../context.js";
import { Rejection, type Outcome, type RunningJob } from "../job.js";
import { flakeAttrOf, nixSystemOf, profilePathOf } from "../os-profiles.js";
import { PreviewCancelled, PreviewRunner, previewAttr, type PreviewTarget } from "../preview.js";

export const BUILDER_TAG = "builder";

export type PublishRetained = (topic: string, payload: string) => Promise<boolean>;

function runningSystem(ctx: AgentContext): string | undefined {
  try {
    return realpathSync(profilePathOf(ctx.config));
  } catch {
    return undefined;
  }
}

/** This host, plus (builders only) the hosts it was asked to preview for. */
export function previewTargets(ctx: AgentContext, cmd: CommandOf<"preview">): PreviewTarget[] {
  const { config } = ctx;
  const others = cmd.args.forHosts ?? [];
  if (others.length > 0 && !config.tags.includes(BUILDER_TAG)) {
    throw new Rejection(`this host has no "${BUILDER_TAG}" tag: it previews only itself (add the tag to preview for other hosts)`);
  }
  const current = runningSystem(ctx);
  const self: PreviewTarget = {
    host: ctx.host,
    attr: previewAttr(config.os.kind, flakeAttrOf(config)),
    ...(current ? { currentSystem: current } : {}),
    ...(config.os.kind === "nixos" ? { bootedSystem: "/run/booted-system" } : {}),
    dryActivate: config.os.kind === "nixos" || config.preview.dryActivate,
  };
  const forOthers = others
    .filter((o) => o.host !== ctx.host)
    .map((o): PreviewTarget => {
      // Other hosts are assumed to be of this host's OS kind (a NixOS builder previews NixOS hosts).
      const flakeAttr = config.os.kind === "generic" ? `lockstepSystems.${nixSystemOf(config)}.${o.host}` : o.host;
      return { host: o.host, attr: previewAttr(config.os.kind, flakeAttr), ...(o.systemPath ? { currentSystem: o.systemPath } : {}), dryActivate: false };
    });
  return [self, ...forOthers];
}

export async function preview(ctx: AgentContext, cmd: CommandOf<"preview">, job: RunningJob, publish: PublishRetained): Promise<Outcome> {
  const { config } = ctx;
  const targets = previewTargets(ctx, cmd);
  const ac = new AbortController();
  job.cancel = () => ac.abort();
  const runner = new PreviewRunner({
    checkoutDir: ctx.checkout.dir,
    branch: config.repo.branch,
    workRoot: join(config.stateDir, "previews"),
    env: ctx.env,
    stepTimeoutMs: config.timeouts.switchSeconds * 1000,
    signal: ac.signal,
    onLine: (stream, text) => job.reporter.line(stream, text),
    builtOn: ctx.host,
    rebootComponents: REBOOT_COMPONENTS,
  });
  const build = cmd.args.build ?? (config.preview.build === "canary" ? config.canary : config.preview.build);
  let results;
  try {
    results = await runner.run(cmd.args, build, targets);
  } catch (e) {
    if (e instanceof PreviewCancelled) return { state: "failed", summary: "preview cancelled" };
    throw e;
  }
  const topics = new Topics(config.topicPrefix, config.haDiscoveryPrefix);
  const unconfirmed: string[] = [];
  for (const r of results) {
    const ok = await publish(topics.hostPreview(ctx.host, r.pr, r.host), JSON.stringify({ ...r, jobId: cmd.id }));
    if (!ok) unconfirmed.push(r.host);
  }
  const summary = results.map((r) => `${r.host}: ${r.summary}`).join("; ").slice(0, 1000);
  if (unconfirmed.length > 0) return { state: "failed", summary: `preview done but the broker did not confirm it for ${unconfirmed.join(", ")}: ${summary}` };
  return { state: "succeeded", summary, exitCode: 0 };
}

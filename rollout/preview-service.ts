/**
 * The hub's preview loop: when fleet/expected names a pending lock-update PR (or a new head of
 * it), ask the fleet for previews (rollout/previews.ts decides who previews what), check each
 * preview agents publish under their own host, republish it on fleet/previews/<pr>/<host> and keep
 * the PR's fleet summary on fleet/preview-summaries/<pr> current. A PR that is no longer pending
 * has its retained previews cleared.
 */
import type { Logger } from "pino";
import { decodeJson, FleetExpected, Topics, type HostPreview, type PendingUpdate, type PreviewMergePolicy, type PreviewSummary, type PreviewVerdict } from "../protocol/index.js";
import type { FleetPort } from "./fleet-port.js";
import { acceptHostPreview, comesFromFork, DEFAULT_PREVIEW_POLICY, gateHosts, planPreviews, PreviewBook, previewPlanHints, type PreviewHost, type PreviewPlanHints, type PreviewPolicy } from "./previews.js";

/** The few MQTT client calls the service makes (an mqtt.js MqttClient has them). */
export interface PreviewMqtt {
  on(event: "message", listener: (topic: string, payload: Buffer) => void): unknown;
  off(event: "message", listener: (topic: string, payload: Buffer) => void): unknown;
  subscribeAsync(topics: string[], opts: { qos: 1 }): Promise<unknown>;
  publishAsync(topic: string, payload: string, opts: { qos: 1; retain: boolean }): Promise<unknown>;
}

export interface PreviewServiceOptions {
  client: PreviewMqtt;
  fleet: Pick<FleetPort, "hosts" | "host" | "sendCommand">;
  topics?: Topics;
  log: Logger;
  policy?: PreviewPolicy;
  /** What automatic mode requires of the previews before it merges (hub config previews.gating; default: what `policy` builds). */
  gating?: PreviewMergePolicy;
  /** A preview command not started within this time is refused by the agent (default 2 h). */
  commandTtlMs?: number;
  /**
   * The fleet repository ("owner/name") when the caller knows it (the hub: its GitHub config).
   * Without it, it is read from fleet/expected, whose retained copy may be another publisher's.
   */
  repo?: string;
  now?: () => Date;
}

/** What the service knows of one PR's preview: the current head's summary and host previews. */
export interface PreviewState {
  summary: PreviewSummary;
  previews: HostPreview[];
}

export class PreviewService {
  readonly book = new PreviewBook();
  /** PRs whose current head is not previewed, and why (a fork PR). */
  private readonly notPreviewed = new Map<number, string>();
  /** What the previews of PRs no longer pending (merged) said, for their rollouts. */
  private readonly recentHints = new Map<number, PreviewPlanHints>();
  /** Per PR (current head): hosts no preview could reach (offline, no builder): not waited for. */
  private readonly unreachable = new Map<number, string[]>();
  private readonly listeners = new Set<(pr: number) => void>();
  /** The fleet repository ("owner/name"; configured, or from fleet/expected): a PR head elsewhere is a fork's. */
  private repo: string | undefined;
  private readonly topics: Topics;
  private readonly onMessage = (topic: string, payload: Buffer) => void this.handle(topic, payload);
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly o: PreviewServiceOptions) {
    this.topics = o.topics ?? new Topics();
    this.repo = o.repo;
  }

  async start(): Promise<void> {
    this.o.client.on("message", this.onMessage);
    await this.o.client.subscribeAsync([this.topics.expected(), this.topics.allHostPreviews()], { qos: 1 });
  }

  stop(): void {
    this.o.client.off("message", this.onMessage);
  }

  /** Messages are handled one at a time, in order (a head change and a late preview must not interleave). */
  private handle(topic: string, payload: Buffer): Promise<void> {
    this.queue = this.queue.then(() => this.handleOne(topic, payload)).catch((err: unknown) => this.o.log.error({ err, topic }, "preview service: cannot handle a message"));
    return this.queue;
  }

  /**
   * Preview this pending PR now if its head is new (the Node-RED preview node's way in; the hub
   * also does it for every head fleet/expected names). Resolves once the requests are sent.
   */
  request(pending: PendingUpdate): Promise<void> {
    this.queue = this.queue.then(() => this.previewHead(pending)).catch((err: unknown) => this.o.log.error({ err, pr: pending.number }, "preview service: cannot request previews"));
    return this.queue;
  }

  /** The current head's summary and previews of a PR, if it is being previewed. */
  state(pr: number): PreviewState | undefined {
    const summary = this.summary(pr);
    return summary && { summary, previews: this.book.previews(pr).filter((p) => p.headSha === summary.headSha) };
  }

  /** Called with the PR's number whenever its summary changes or is cleared; returns the unsubscribe. */
  onChange(listener: (pr: number) => void): () => void {
    this.listeners.add(listener);
    return () => this.listeners.delete(listener);
  }

  /** Resolves once every message received so far has been handled. */
  idle(): Promise<void> {
    return this.queue;
  }

  private async handleOne(topic: string, payload: Buffer): Promise<void> {
    const t = this.topics.parse(topic);
    if (t?.kind === "expected") {
      const d = decodeJson(FleetExpected, payload);
      if (!d.ok) return;
      this.repo = this.o.repo ?? d.value.repo;
      await this.onPending(d.value.pendingUpdate);
      return;
    }
    if (t?.kind !== "hostPreview" || payload.length === 0) return;
    const accepted = acceptHostPreview(t, payload, this.o.fleet.host(t.builtOn)?.info);
    if (!accepted.ok) return void this.o.log.warn({ topic, reason: accepted.reason }, "preview ignored");
    if (!this.book.add(accepted.preview)) return; // of an older head, or older than what we have
    await this.publish(this.topics.preview(t.pr, t.host), JSON.stringify(accepted.preview));
    await this.publishSummary(t.pr);
  }

  private previewHosts(): PreviewHost[] {
    return this.o.fleet
      .hosts()
      .filter((h) => h.info !== undefined)
      .map((h) => ({ info: h.info!, online: h.availability === "online" }));
  }

  private async onPending(pending: PendingUpdate | null): Promise<void> {
    for (const pr of this.book.prs()) {
      if (pr === pending?.number) continue;
      // A PR stops being pending when it is merged: its rollout still asks what its previews said.
      const head = this.book.head(pr);
      if (head !== undefined && !this.notPreviewed.has(pr)) this.remember(previewPlanHints(pr, head, this.book.previews(pr)));
      this.notPreviewed.delete(pr);
      this.unreachable.delete(pr);
      for (const host of this.book.forget(pr)) await this.publish(this.topics.preview(pr, host), "");
      await this.publish(this.topics.previewSummary(pr), "");
      this.changed(pr);
    }
    if (pending) await this.previewHead(pending);
  }

  private async previewHead(pending: PendingUpdate): Promise<void> {
    if (this.book.head(pending.number) === pending.headSha) return;
    // Whether the head is a fork's needs the fleet's repository (fleet/expected, retained): until
    // it is known, leave the PR to the fleet/expected that will name it.
    if (this.repo === undefined && pending.headRepo !== undefined) return void this.o.log.info({ pr: pending.number }, "preview asked before fleet/expected arrived: waiting for it");
    // A new head: the old head's previews no longer count (the summary ignores them too).
    for (const host of this.book.setHead(pending.number, pending.headSha)) await this.publish(this.topics.preview(pending.number, host), "");
    this.notPreviewed.delete(pending.number);
    this.unreachable.delete(pending.number);
    const hosts = this.previewHosts();
    const fromFork = this.repo !== undefined && comesFromFork(pending.headRepo, this.repo);
    const plan = planPreviews({ number: pending.number, headSha: pending.headSha, fromFork }, hosts, this.o.policy ?? DEFAULT_PREVIEW_POLICY);
    if (!plan.ok) {
      this.o.log.info({ pr: pending.number, headRepo: pending.headRepo, reason: plan.reason }, "PR not previewed");
      this.notPreviewed.set(pending.number, plan.reason);
      await this.publishSummary(pending.number);
      return;
    }
    const now = this.o.now?.() ?? new Date();
    const expiresAt = new Date(now.getTime() + (this.o.commandTtlMs ?? 2 * 3_600_000));
    for (const r of plan.requests) {
      try {
        await this.o.fleet.sendCommand(r.host, "preview", r.args, { expiresAt, requestedBy: "hub:preview" });
      } catch (err) {
        this.o.log.warn({ err, host: r.host, pr: pending.number }, "cannot ask a host for a preview");
      }
    }
    this.unreachable.set(pending.number, plan.unreachable);
    this.o.log.info({ pr: pending.number, head: pending.headSha, asked: plan.requests.map((r) => r.host), unreachable: plan.unreachable }, "previews requested");
    await this.publishSummary(pending.number);
  }

  /** The summary of the PR's current head; when that head is not previewed, its text says why. */
  summary(pr: number): PreviewSummary | undefined {
    const hosts = this.previewHosts().map((h) => h.info.host);
    const s = this.book.summary(pr, hosts, this.o.now?.() ?? new Date());
    if (!s) return s;
    const refused = this.notPreviewed.get(pr);
    if (refused) return { ...s, text: refused, notPreviewed: refused };
    const unreachable = this.unreachable.get(pr);
    return unreachable ? { ...s, unreachable } : s;
  }

  /**
   * What automatic mode requires of the previews (hub config previews.gating). Not given: what the
   * build policy can prove (every host builds → "all", the canaries → "canary", nobody → "ignore").
   */
  get gating(): PreviewMergePolicy {
    if (this.o.gating) return this.o.gating;
    const buildOn = (this.o.policy ?? DEFAULT_PREVIEW_POLICY).buildOn;
    return buildOn === "all" ? "all" : buildOn === "canary" ? "canary" : "ignore";
  }

  /**
   * May automatic mode merge PR `pr` at `headSha` now? Waits while the previews of that head are
   * still to come (or the head is newer than what this service has seen); refuses a head that was
   * not previewed (a fork PR) or whose previews do not build (per `policy`, default the hub's gating).
   */
  mergeVerdict(pr: number, headSha: string, policy: PreviewMergePolicy = this.gating): PreviewVerdict {
    if (policy === "ignore") return { ok: true };
    if (this.book.head(pr) !== headSha) return { ok: false, wait: true, reason: `PR #${pr} at ${headSha.slice(0, 7)} has not been previewed yet` };
    const refused = this.notPreviewed.get(pr);
    if (refused !== undefined) return { ok: false, wait: false, reason: `PR #${pr} at ${headSha.slice(0, 7)} was not previewed: ${refused}` };
    return this.book.verdict(policy, pr, gateHosts(this.previewHosts()));
  }

  /**
   * What the previews of PR `pr` at `headSha` tell a rollout of it (also for a PR that was just
   * merged and is no longer pending); undefined when that head was not previewed.
   */
  planHints(pr: number, headSha: string): PreviewPlanHints | undefined {
    if (this.book.head(pr) === headSha && !this.notPreviewed.has(pr)) return previewPlanHints(pr, headSha, this.book.previews(pr));
    const recent = this.recentHints.get(pr);
    return recent?.headSha === headSha ? recent : undefined;
  }

  /** Keep the hints of a PR that is no longer pending (the newest 20). */
  private remember(hints: PreviewPlanHints): void {
    this.recentHints.delete(hints.pr);
    this.recentHints.set(hints.pr, hints);
    if (this.recentHints.size > 20) this.recentHints.delete(this.recentHints.keys().next().value!);
  }

  private async publishSummary(pr: number): Promise<void> {
    const s = this.summary(pr);
    if (!s) return;
    await this.publish(this.topics.previewSummary(pr), JSON.stringify(s));
    this.changed(pr);
  }

  private changed(pr: number): void {
    for (const l of this.listeners) {
      try {
        l(pr);
      } catch (err) {
        this.o.log.warn({ err, pr }, "a preview listener failed");
      }
    }
  }

  private async publish(topic: string, payload: string): Promise<void> {
    await this.o.client.publishAsync(topic, payload, { qos: 1, retain: true });
  }
}

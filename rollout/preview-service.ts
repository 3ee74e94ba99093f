/**
 * The hub's preview loop: when fleet/expected names a pending lock-update PR (or a new head of
 * it), ask the fleet for previews (rollout/previews.ts decides who previews what), check each
 * preview agents publish under their own host, republish it on fleet/previews/<pr>/<host> and keep
 * the PR's fleet summary on fleet/preview-summaries/<pr> current. A PR that is no longer pending
 * has its retained previews cleared.
 */
import type { Logger } from "pino";
import { decodeJson, FleetExpected, Topics, type PendingUpdate, type PreviewSummary } from "../protocol/index.js";
import type { FleetPort } from "./fleet-port.js";
import { acceptHostPreview, DEFAULT_PREVIEW_POLICY, planPreviews, PreviewBook, type PreviewHost, type PreviewPolicy } from "./previews.js";

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
  /** A preview command not started within this time is refused by the agent (default 2 h). */
  commandTtlMs?: number;
  now?: () => Date;
}

export class PreviewService {
  readonly book = new PreviewBook();
  private readonly topics: Topics;
  private readonly onMessage = (topic: string, payload: Buffer) => void this.handle(topic, payload);
  private queue: Promise<void> = Promise.resolve();

  constructor(private readonly o: PreviewServiceOptions) {
    this.topics = o.topics ?? new Topics();
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

  /** Resolves once every message received so far has been handled. */
  idle(): Promise<void> {
    return this.queue;
  }

  private async handleOne(topic: string, payload: Buffer): Promise<void> {
    const t = this.topics.parse(topic);
    if (t?.kind === "expected") {
      const d = decodeJson(FleetExpected, payload);
      if (d.ok) await this.onPending(d.value.pendingUpdate);
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
      for (const host of this.book.forget(pr)) await this.publish(this.topics.preview(pr, host), "");
      await this.publish(this.topics.previewSummary(pr), "");
    }
    if (!pending || this.book.head(pending.number) === pending.headSha) return;
    // A new head: the old head's previews no longer count (the summary ignores them too).
    for (const host of this.book.setHead(pending.number, pending.headSha)) await this.publish(this.topics.preview(pending.number, host), "");
    const hosts = this.previewHosts();
    const plan = planPreviews({ number: pending.number, headSha: pending.headSha }, hosts, this.o.policy ?? DEFAULT_PREVIEW_POLICY);
    if (!plan.ok) {
      this.o.log.info({ pr: pending.number, reason: plan.reason }, "PR not previewed");
      await this.publishSummary(pending.number, plan.reason);
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
    this.o.log.info({ pr: pending.number, head: pending.headSha, asked: plan.requests.map((r) => r.host), unreachable: plan.unreachable }, "previews requested");
    await this.publishSummary(pending.number);
  }

  /** The summary of the PR's current head; `refused` replaces its text when the PR is not previewed. */
  summary(pr: number, refused?: string): PreviewSummary | undefined {
    const hosts = this.previewHosts().map((h) => h.info.host);
    const s = this.book.summary(pr, hosts, this.o.now?.() ?? new Date());
    return s && refused ? { ...s, text: refused } : s;
  }

  private async publishSummary(pr: number, refused?: string): Promise<void> {
    const s = this.summary(pr, refused);
    if (s) await this.publish(this.topics.previewSummary(pr), JSON.stringify(s));
  }

  private async publish(topic: string, payload: string): Promise<void> {
    await this.o.client.publishAsync(topic, payload, { qos: 1, retain: true });
  }
}

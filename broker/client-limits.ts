/**
 * What one client may cost the embedded broker (broker/config.ts `limits`), apart from packet size
 * (aedes-fixes.ts limitPackets): subscriptions per SUBSCRIBE and per client, and a publish rate.
 * access.ts asks these before its ACL answers; clients of the hub role are not limited.
 *
 * Over the publish rate a client is disconnected rather than having publishes dropped: a dropped
 * QoS 1 publish is acknowledged, so a bursty but honest client (an agent's final job state) would
 * lose it silently, while after a disconnect MQTT clients send unacknowledged messages again, and a
 * flood pays a reconnect and a login (with its backoff) each time.
 */
import type { Client, Subscription } from "aedes";
import type { BrokerLimits } from "./config.js";

export class ClientLimits {
  /** Subscriptions of a SUBSCRIBE with too many filters (refused whole). */
  private readonly refusedFilters = new WeakSet<object>();
  private readonly subscriptions = new WeakMap<Client, Set<string>>();
  private readonly buckets = new WeakMap<Client, { tokens: number; at: number }>();

  constructor(
    readonly limits: BrokerLimits,
    private readonly now: () => number = Date.now,
  ) {}

  /** Called with the filters of a SUBSCRIBE over maxFiltersPerSubscribe. */
  refuseFilters(subs: ReadonlyArray<object>): void {
    for (const sub of subs) this.refusedFilters.add(sub);
  }

  /** Was this subscription part of a SUBSCRIBE with too many filters? */
  inRefusedSubscribe(sub: Subscription): boolean {
    return this.refusedFilters.has(sub);
  }

  /**
   * May `client` hold one more subscription on `filter`? Counted when granted; a filter it already
   * holds is no extra. Aedes restores a persistent session's filters through the same check.
   */
  takeSubscription(client: Client, filter: string): boolean {
    let held = this.subscriptions.get(client);
    if (!held) this.subscriptions.set(client, (held = new Set()));
    if (held.has(filter)) return true;
    if (held.size >= this.limits.maxSubscriptionsPerClient) return false;
    held.add(filter);
    return true;
  }

  /** Call on Aedes' "unsubscribe" event. */
  unsubscribed(client: Client, filters: readonly string[]): void {
    const held = this.subscriptions.get(client);
    for (const filter of filters) held?.delete(filter);
  }

  /** One publish from `client`: false when its token bucket is empty. */
  takePublish(client: Client): boolean {
    const { perSecond, burst } = this.limits.publishRate;
    const now = this.now();
    const bucket = this.buckets.get(client) ?? { tokens: burst, at: now };
    bucket.tokens = Math.min(burst, bucket.tokens + ((now - bucket.at) / 1000) * perSecond);
    bucket.at = now;
    this.buckets.set(client, bucket);
    if (bucket.tokens < 1) return false;
    bucket.tokens -= 1;
    return true;
  }
}

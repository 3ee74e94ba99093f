/**
 * A PreviewService's MQTT client without a broker (what it publishes is kept as the retained
 * state; `deliver` hands it a message as if an agent or the hub had published it), and a host
 * snapshot as the fleet view keeps it. Shared by the preview service, node and comment tests.
 */
import { HostInfo } from "../../protocol/index.js";
import type { PreviewMqtt } from "../../rollout/preview-service.js";
import type { HostSnapshot } from "../../rollout/fleet-port.js";

export class FakePreviewMqtt implements PreviewMqtt {
  listener?: (topic: string, payload: Buffer) => void;
  readonly retained = new Map<string, string>();
  on(_e: "message", l: (topic: string, payload: Buffer) => void) {
    this.listener = l;
  }
  off() {
    this.listener = undefined;
  }
  async subscribeAsync() {}
  async publishAsync(topic: string, payload: string) {
    if (payload === "") this.retained.delete(topic);
    else this.retained.set(topic, payload);
  }
  deliver(topic: string, payload: unknown) {
    this.listener!(topic, Buffer.from(typeof payload === "string" ? payload : JSON.stringify(payload)));
  }
}

const at = "2026-12-04T10:00:00.000Z";

export function hostSnapshot(host: string, online: boolean, more: Partial<HostInfo> = {}): HostSnapshot {
  return { host, availability: online ? "online" : "offline", compartments: {}, info: HostInfo.parse({ host, hostname: host, os: "generic", agentVersion: "1", branch: "main", startedAt: at, updatedAt: at, ...more }) };
}

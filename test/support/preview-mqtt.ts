/**
 * A PreviewService's MQTT client without a broker (what it publishes is kept as the retained
 * state; `deliver` hands it a message as if an agent or the hub had published it), and a host
 * snapshot as the fleet view keeps it. Shared by the preview service, node and comment tests.
 */
import { HostInfo, type HostPreview, type PendingUpdate } from "../../protocol/index.js";
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

export const PREVIEW_AT = "2026-12-04T10:00:00.000Z";

/** PR #7 pending at `headSha`, as detection reports it. */
export const pendingPr7 = (headSha: string): PendingUpdate => ({ number: 7, title: "flake.lock: Update", url: "https://example.invalid/pr/7", headSha, headBranch: "update", openedAt: PREVIEW_AT, lockDiff: { added: [], removed: [], updated: [] }, ci: { state: "success" }, superseded: [] });

/** A host's preview of PR #7 at `headSha` (hello 2.12 → 2.13 unless overridden). */
export const hostPreviewPr7 = (host: string, headSha: string, over: Partial<HostPreview> = {}): HostPreview => ({ pr: 7, host, headSha, outcome: "affected", summary: "", affected: true, builds: true, packages: [{ name: "hello", old: ["2.12"], new: ["2.13"] }], reboot: null, units: null, builtOn: host, startedAt: PREVIEW_AT, finishedAt: PREVIEW_AT, ...over });

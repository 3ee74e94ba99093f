/**
 * The retained `hub/status` payload: what the hub was started with, so the fleet page can tell a
 * new user what to do next (no repository configured yet; the port agents connect to).
 */
import type { MqttClient } from "mqtt";
import { HubStatus, type Topics } from "../protocol/index.js";
import { AGENT_VERSION } from "../agent/version.js";

export interface HubStatusFacts {
  /** The GitHub repository from the hub config, when one is configured. */
  github?: { owner?: string; repo?: string };
  /** The embedded broker's TCP port; undefined with an external broker. */
  mqttPort?: number;
  startedAt: Date;
}

export function hubStatus(facts: HubStatusFacts): HubStatus {
  const { owner, repo } = facts.github ?? {};
  return HubStatus.parse({
    version: AGENT_VERSION,
    startedAt: facts.startedAt.toISOString(),
    github: owner && repo ? { configured: true, repo: `${owner}/${repo}` } : { configured: false },
    ...(facts.mqttPort !== undefined ? { mqttPort: facts.mqttPort } : {}),
  });
}

export async function publishHubStatus(client: MqttClient, topics: Topics, facts: HubStatusFacts): Promise<void> {
  await client.publishAsync(topics.hubStatus(), JSON.stringify(hubStatus(facts)), { retain: true, qos: 1 });
}

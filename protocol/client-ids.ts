/**
 * The MQTT client ids agents use. Fixed per host, so a persistent session (and the commands queued
 * in it while the host is offline) is found again; the embedded broker reserves them for the host's
 * own agent user (broker/session-owners.ts), so no other credential can take over that session.
 */
import { HOST_ID_PATTERN } from "./topics.js";

const AGENT_PREFIX = "lockstep-agent-";
const SELF_UPDATE_PREFIX = "lockstep-self-update-";

/** The agent daemon's client id (persistent session). */
export function agentClientId(host: string): string {
  return `${AGENT_PREFIX}${host}`;
}

/**
 * The nightly self-update's client id (the daemon may be connected meanwhile): a clean session,
 * except while a switch waits for the hub's confirmation (a run killed then finds it queued).
 */
export function selfUpdateClientId(host: string): string {
  return `${SELF_UPDATE_PREFIX}${host}`;
}

/** The host whose agent client id this is, or undefined for any other id. */
export function hostOfAgentClientId(clientId: string): string | undefined {
  for (const prefix of [AGENT_PREFIX, SELF_UPDATE_PREFIX]) {
    if (!clientId.startsWith(prefix)) continue;
    const host = clientId.slice(prefix.length);
    if (HOST_ID_PATTERN.test(host)) return host;
  }
  return undefined;
}

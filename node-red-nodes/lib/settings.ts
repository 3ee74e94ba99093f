/**
 * `RED.settings.lockstep`: defaults the hub hands to our config nodes when Node-RED runs inside it
 * (broker URL and the hub's own MQTT credentials, the GitHub repo, the weekly automation). In a
 * stock Node-RED the same block may be written into settings.js. Every field is optional: a config
 * node's own fields win, settings fill the gaps. Inside the hub, `services` holds the services the
 * hub built once (lib/services.ts); a stock Node-RED has none and its config nodes build their own.
 */
import { z } from "zod";
import { formatZodError } from "../../protocol/index.js";
import { ConfigError } from "../../protocol/errors.js";
import type { NodeAPI } from "./red.js";
import type { LockstepServices } from "./services.js";

export const LockstepSettingsSchema = z.object({
  mqtt: z
    .object({
      url: z.string().regex(/^(mqtts?|wss?):\/\//, "expected an mqtt://, mqtts://, ws:// or wss:// URL"),
      username: z.string().optional(),
      password: z.string().optional(),
    })
    .optional(),
  prefix: z.string().optional(),
  /** Where rollout state is kept; default <userDir>/lockstep. */
  stateDir: z.string().optional(),
  /** github/config.ts GitHubConfigInput (owner, repo, baseBranch, apiBaseUrl, token or tokenFile, ...). */
  github: z.record(z.string(), z.unknown()).optional(),
  /** Defaults for every deploy node's RolloutSpec (rollout/spec.ts): strategy, onFailure, ... */
  rollout: z.record(z.string(), z.unknown()).optional(),
  // The shipped flows' notification and re-check settings come from the environment
  // (LOCKSTEP_APPRISE_URL, LOCKSTEP_RECHECK_MINUTES, LOCKSTEP_MAX_WAIT_HOURS), read by function nodes.
  automatic: z
    .object({
      cron: z.string().optional(),
      timeZone: z.string().optional(),
      mergeDelayMinutes: z.number().optional(),
    })
    .default({}),
});
export type LockstepSettings = z.infer<typeof LockstepSettingsSchema> & {
  /** Set by the hub only: its services, shared by every config node. */
  services?: LockstepServices;
};

/** Read and validate `RED.settings.lockstep` (absent → all defaults). */
export function lockstepSettings(RED: NodeAPI): LockstepSettings {
  const raw = RED.settings.lockstep as (Record<string, unknown> & { services?: LockstepServices }) | undefined;
  if (raw === undefined) return LockstepSettingsSchema.parse({});
  // The services are live objects the hub built, not settings to validate.
  const { services, ...rest } = raw;
  const parsed = LockstepSettingsSchema.safeParse(rest);
  if (!parsed.success) throw new ConfigError(`settings.lockstep is invalid: ${formatZodError(parsed.error)}`, "fix the lockstep block in Node-RED's settings");
  return { ...parsed.data, ...(services ? { services } : {}) };
}

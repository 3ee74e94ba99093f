/**
 * What `lockstep hub` hands to Node-RED in `settings.lockstep.services`: the services it built
 * once (hub/services.ts). Config nodes use them when present and build their own only in a stock
 * Node-RED, so inside the hub there is one fleet view, one rollout store and one GitHub watcher.
 */
import type { GitHubService } from "../../github/service.js";
import type { FleetView } from "../../rollout/fleet-view.js";
import type { RolloutService } from "../../rollout/service.js";
import type { PreviewService } from "../../rollout/preview-service.js";
import type { AutomaticPause } from "../../rollout/automatic-pause.js";

export interface LockstepServices {
  /** The hub's MQTT view of the fleet (host state cache, the one command path). */
  fleet: FleetView;
  /** The hub's rollouts, with their one store under the data dir. */
  rollouts: RolloutService;
  /** Resolves once the fleet view is subscribed and unfinished rollouts were resumed. */
  ready: Promise<void>;
  /** The hub's GitHub service (merge use case, watcher); absent when no repository is configured. */
  github?: GitHubService;
  /** The hub's previews of the pending update (merge verdict for automatic mode); absent when previews are off. */
  previews?: PreviewService;
  /** Automatic mode's pause after a failed rollout (the weekly flow's gate step "automatic-paused"); the hub's only. */
  automatic?: AutomaticPause;
  /** Where nodes keep their own small state next to the rollout store (which deploy node started what). */
  stateDir: string;
}

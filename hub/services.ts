/**
 * The hub's services root: every service is built here once and shared by the rollouts, Node-RED
 * (handed over in settings.lockstep.services), Home Assistant and the API.
 *
 *   fleet view   rollout/fleet-view.ts: the one host-state cache and the one command path
 *   rollouts     rollout/service.ts, with one store under <dataDir>/rollout
 *   github       github/service.ts: the watcher (polled here) and the merge use case; its
 *                "expected" events become the retained fleet/expected (the hub owns that topic)
 *   audit        merge events and every command go to fleet/events, which the audit log keeps
 *   previews     rollout/preview-service.ts: every pending lock-update PR previewed on the fleet
 *                (with previews.githubComment, github/preview-comment.ts keeps the table on the PR)
 *   converge     hub/converge.ts: Lockstep's revert of a failed rollout merged, the fleet converged onto it
 *   summary      hub/fleet-summary.ts: the retained fleet/summary (counts, hosts needing attention) the page paints first
 *
 * `steps` start them in order, each paired with its stop (hub/steps.ts).
 */
import { existsSync, mkdirSync, renameSync } from "node:fs";
import { join } from "node:path";
import type { MqttClient } from "mqtt";
import type { Logger } from "pino";
import type { Topics } from "../protocol/index.js";
import type { GitHubConfigInput } from "../github/config.js";
import { GitHubService } from "../github/service.js";
import { commentOnPreviews, PreviewComments } from "../github/preview-comment.js";
import { FleetView } from "../rollout/fleet-view.js";
import { PreviewService } from "../rollout/preview-service.js";
import { RolloutService } from "../rollout/service.js";
import { SwitchConfirmer } from "../rollout/confirmer.js";
import { RolloutStore } from "../rollout/store.js";
import type { LockstepServices } from "../node-red-nodes/lib/services.js";
import type { StartStep } from "./steps.js";
import { RevertConverger } from "./converge.js";
import { AutomaticPause } from "../rollout/automatic-pause.js";
import { PreviewSettings } from "./config.js";
import type { StorageHealth } from "./storage-health.js";
import { StorageFile } from "./storage-file.js";
import { FleetSummaryPublisher } from "./fleet-summary.js";

/** Where the rollout store lives, under the data dir. */
export const ROLLOUT_STATE_DIR = "rollout";
/** Where the shipped flows' lockstep-fleet node kept it before the hub owned the store. */
const OLD_ROLLOUT_STATE_DIR = join("node-red", "lockstep", "fleet-lockstep-fleet-config");

export interface HubServicesOptions {
  /** The hub's MQTT connection (hub role). */
  client: MqttClient;
  topics: Topics;
  dataDir: string;
  log: Logger;
  /** The hub config's github section; without owner and repo there is no GitHub service. */
  github?: GitHubConfigInput | Record<string, unknown>;
  /** The hub config's previews section (default: on, every host builds, automatic mode gates on all). */
  previews?: PreviewSettings;
  /** How long retained host and job states get to arrive before unfinished rollouts resume. */
  settleMs?: number;
  /** The hub's rollout defaults (config.rollout): the converge rollout after a revert starts from them. */
  rolloutDefaults?: Record<string, unknown>;
  /** automatic.mergeReverts: merge Lockstep's revert PR by itself once its CI passes. */
  mergeReverts?: boolean;
  /** automatic.resumeOnGreenPreview: a later PR's preview building everywhere ends a pause after a failed rollout. */
  resumeOnGreenPreview?: boolean;
  /** The hub's storage health: the rollout store and automatic.json report their writes to it. */
  storage?: StorageHealth;
}

export interface HubServices extends LockstepServices {
  /** Start order; stop runs backwards. */
  steps: StartStep[];
  /** Merging Lockstep's revert and converging the fleet onto it; absent without GitHub. */
  converge?: RevertConverger;
}

/**
 * A hub from before the services root kept its rollouts under the shipped fleet node's directory:
 * move them once, so unfinished rollouts still resume.
 */
function rolloutStateDir(dataDir: string, log: Logger): string {
  const dir = join(dataDir, ROLLOUT_STATE_DIR);
  const old = join(dataDir, OLD_ROLLOUT_STATE_DIR);
  if (!existsSync(dir) && existsSync(old)) {
    renameSync(old, dir);
    log.info({ from: old, to: dir }, "moved the rollout store to the hub's data dir");
  }
  mkdirSync(dir, { recursive: true });
  return dir;
}

export function buildHubServices(opts: HubServicesOptions): HubServices {
  const { client, topics, log } = opts;
  const fleet = new FleetView({ client, topics, logger: log });
  const github =
    opts.github && opts.github.owner && opts.github.repo
      ? new GitHubService(opts.github as GitHubConfigInput, log.child({ component: "github" }), { audit: (event) => fleet.publishAudit(event) })
      : undefined;
  const stateDir = rolloutStateDir(opts.dataDir, log);
  const storage = opts.storage;
  const rollouts: RolloutService = new RolloutService({
    fleet,
    store: new RolloutStore(stateDir),
    logger: log.child({ component: "rollouts" }),
    defaults: opts.rolloutDefaults ?? {},
    ...(github ? { revert: github.revertForRollout } : {}),
    // A rollout whose record cannot be written is held, and resumed by the storage health's retry.
    ...(storage
      ? {
          storage: {
            assertWritable: () => storage.assertWritable(),
            reporter: storage.writer("rollouts", () => rollouts.retryHeld()),
            holdRollout: (id: string) => storage.holdRollout(id),
            releaseRollout: (id: string) => storage.releaseRollout(id),
          },
        }
      : {}),
  });
  const previewSettings = opts.previews ?? PreviewSettings.parse({});
  const previews = previewSettings.enabled
    ? new PreviewService({
        client,
        fleet,
        topics,
        log: log.child({ component: "previews" }),
        policy: { buildOn: previewSettings.build, allowForks: previewSettings.allowForks, allowMoreThanLock: previewSettings.allowMoreThanLock },
        gating: previewSettings.gating,
        // The configured repository decides what is a fork, not whichever fleet/expected is retained.
        ...(github ? { repo: `${opts.github!.owner}/${opts.github!.repo}` } : {}),
      })
    : undefined;
  const converge = github
    ? new RevertConverger({ github, rollouts, log, rolloutDefaults: opts.rolloutDefaults ?? {}, mergeAutomatically: opts.mergeReverts ?? false })
    : undefined;
  // Automatic mode pauses after a failed rollout; the state lives in the data dir.
  const automaticPath = join(opts.dataDir, "automatic.json");
  const automaticLog = log.child({ component: "automatic" });
  const automaticFile: StorageFile = new StorageFile({
    path: automaticPath,
    ...(storage ? { storage: storage.writer("automatic", () => automaticFile.retry()) } : {}),
    // The pause still holds in memory and is written once the data dir can be written.
    onFault: (err) => automaticLog.error({ err, file: automaticPath }, "cannot store the automatic-mode state (paused/resumed) in the data dir"),
  });
  const automatic = new AutomaticPause({
    file: automaticPath,
    store: automaticFile,
    log: automaticLog,
    publish: async (state) => void (await client.publishAsync(topics.automaticPause(), JSON.stringify(state), { qos: 1, retain: true })),
    audit: (event) => void fleet.publishAudit(event).catch((err: unknown) => log.warn({ err }, "cannot publish an audit event")),
    ...(previews ? { previews } : {}),
    resumeOnGreenPreview: opts.resumeOnGreenPreview ?? true,
  });
  let markReady!: () => void;
  const ready = new Promise<void>((resolve) => (markReady = resolve));
  let stopped = false;

  const steps: StartStep[] = [
    {
      name: "fleet view",
      async start() {
        await fleet.start();
        return () => fleet.stop();
      },
    },
    {
      // The page's first paint on a large fleet: counts and hosts needing attention, kept retained.
      name: "fleet summary",
      async start() {
        const summary = new FleetSummaryPublisher({ fleet, client, topics, log: log.child({ component: "fleet-summary" }) });
        summary.start();
        return async () => summary.stop();
      },
    },
    {
      // Agents roll back a switch nobody confirms: the hub confirms those no rollout owns once the host is back.
      name: "switch confirmations",
      async start() {
        const confirmer = new SwitchConfirmer(fleet, log.child({ component: "confirmer" }));
        return async () => confirmer.stop();
      },
    },
    {
      name: "rollouts",
      async start() {
        // Retained host and job states arrive right after subscribing; let them land before resuming.
        // In the background: the rest of the hub need not wait for it.
        const settle = setTimeout(() => {
          if (stopped) return;
          rollouts.resumeUnfinished().then(
            (resumed) => {
              if (resumed.length) log.info({ resumed }, "resumed unfinished rollouts");
              markReady();
            },
            (err: unknown) => {
              log.error({ err }, "cannot resume unfinished rollouts");
              markReady();
            },
          );
        }, opts.settleMs ?? 1000);
        return async () => {
          stopped = true;
          clearTimeout(settle);
          await rollouts.close();
        };
      },
    },
    {
      name: "github",
      async start() {
        if (!github) return;
        // The hub owns fleet/expected: what the watcher says the fleet should run goes out retained,
        // newest last, and again after a reconnect (a broker without persistence has lost it).
        let latest: Parameters<FleetView["publishExpected"]>[0] | undefined;
        const publish = () => {
          if (!latest) return;
          fleet.publishExpected(latest).catch((err: unknown) => log.warn({ err }, "could not publish fleet/expected"));
        };
        const onExpected = (expected: NonNullable<typeof latest>) => {
          latest = expected;
          publish();
        };
        github.watcher.on("expected", onExpected);
        const unfollow = fleet.onConnection((up) => up && publish());
        github.watcher.start();
        return async () => {
          unfollow();
          github.watcher.off("expected", onExpected);
          await github.close();
        };
      },
    },
    {
      name: "previews",
      // Every pending lock-update PR is previewed on the fleet before anyone merges it:
      // requests per new head, checked republishing of agents' previews, the fleet summary.
      async start() {
        if (!previews) return;
        await previews.start();
        return async () => previews.stop();
      },
    },
    {
      name: "preview comments",
      // previews.githubComment: one comment per PR with the preview table, edited in place.
      async start() {
        if (!previews || !github || !previewSettings.githubComment) return;
        const commentLog = log.child({ component: "preview-comment" });
        const unfollow = commentOnPreviews(previews, new PreviewComments(github.client, commentLog), commentLog);
        return async () => unfollow();
      },
    },
    {
      // After a failed rollout no automatic merge until an operator resumes (or a later preview builds everywhere).
      name: "automatic pause",
      async start() {
        await automatic.start();
        const onDone = (p: Parameters<AutomaticPause["rolloutEnded"]>[0]) => automatic.rolloutEnded(p);
        rollouts.events.on("done", onDone);
        return async () => {
          rollouts.events.off("done", onDone);
          automatic.stop();
        };
      },
    },
    {
      // A failure ends in a green fleet: Lockstep's revert merged (by the API, or automatically) converges the fleet.
      name: "converge after reverts",
      async start() {
        if (!converge) return;
        converge.start();
        return async () => converge.stop();
      },
    },
  ];
  return { fleet, rollouts, ready, stateDir, ...(github ? { github } : {}), ...(previews ? { previews } : {}), ...(converge ? { converge } : {}), automatic, steps };
}

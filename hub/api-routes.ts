/**
 * The hub's own /api/ routes, mounted in one place so the hub (hub/start.ts) and the tests that
 * drive the API over HTTP (test/unit/inputs-fuzz-api.test.ts) serve the same table. Every route
 * runs after the API's Basic auth (`auth`). The rollout services (converge, automatic, rollouts)
 * are read per request because they start after the HTTP server does; the fleet stream's handler
 * is built at mount, from the fleet view, which the hub has started by then.
 */
import type { AutomaticPause } from "../rollout/automatic-pause.js";
import type { RolloutService } from "../rollout/service.js";
import { apiBodyParser, apiRoutes, routeListHandler } from "./api.js";
import { auditHandler, type AuditLog } from "./audit-log.js";
import { mergeRevertHandler, resumeHandler, type RevertConverger } from "./converge.js";
import { whoamiHandler, type RequestHandler } from "./node-red.js";
import { CANCEL_STEP_PATH, cancelStepHandler } from "./rollout-api.js";
import { FLEET_STREAM_PATH } from "../protocol/fleet-stream.js";

export interface HubApiApp {
  get(path: string, ...handlers: RequestHandler[]): void;
  post(path: string, ...handlers: RequestHandler[]): void;
}

export interface HubApiServices {
  /** The API's Basic auth (nodeRed.apiAuth): sets req.lockstepUser, lets only operators write. */
  auth: RequestHandler;
  auditLog: AuditLog;
  /** Other apps whose /api/ routes `GET /api/` lists too (Node-RED's httpNode). */
  alsoRouting: unknown[];
  converge: () => RevertConverger | undefined;
  automatic: () => AutomaticPause | undefined;
  rollouts: () => Pick<RolloutService, "cancelStep"> | undefined;
  /** GET /api/fleet/stream (hub/fleet-stream.ts), the page's host state; absent: not served. */
  fleetStream?: RequestHandler;
}

export function mountHubApi(app: HubApiApp, s: HubApiServices): void {
  app.get("/api/", s.auth, routeListHandler(() => apiRoutes(app, ...s.alsoRouting)));
  app.get("/api/whoami", s.auth, whoamiHandler);
  app.get("/api/audit", s.auth, auditHandler(s.auditLog) as RequestHandler);
  // The page's host state: one snapshot from the fleet view, then live changes (no retained replay).
  if (s.fleetStream) app.get(FLEET_STREAM_PATH, s.auth, s.fleetStream);
  const body = apiBodyParser();
  app.post("/api/flake-updates/merge-revert", s.auth, body, mergeRevertHandler(s.converge));
  // These two take no body, but a malformed one is still a 400 (as on every API route), never acted on.
  app.post("/api/automatic/resume", s.auth, body, resumeHandler(s.automatic));
  app.post(CANCEL_STEP_PATH, s.auth, body, cancelStepHandler(s.rollouts));
}

/**
 * `POST /api/rollouts/:id/hosts/:host/cancel` (operator): cancel the step a host runs in a running
 * rollout (RolloutService.cancelStep; docs/architecture.md, "Cancelling a step"). 200
 * {cancelled: true, rollout_id, host}; 404 no such rollout; 409 not running, or the host runs no
 * step. Runs after the API auth, which lets only operators write.
 */
import { z } from "zod";
import { HOST_ID_PATTERN, ID_PATTERN } from "../protocol/index.js";
import { apiErrorBody } from "../node-red-nodes/lib/api-errors.js";
import type { RolloutService } from "../rollout/service.js";
import type { RequestHandler } from "./node-red.js";

export const CANCEL_STEP_PATH = "/api/rollouts/:id/hosts/:host/cancel";

const Params = z.object({
  id: z.string().regex(ID_PATTERN, "a rollout id"),
  host: z.string().regex(HOST_ID_PATTERN, "a host id"),
});

export function cancelStepHandler(rollouts: () => Pick<RolloutService, "cancelStep"> | undefined): RequestHandler {
  return (req, res, next) => {
    const send = (status: number, body: unknown) => {
      res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
      res.end(JSON.stringify(body));
    };
    const parsed = Params.safeParse((req as { params?: unknown }).params ?? {});
    if (!parsed.success) return send(400, apiErrorBody(`${parsed.error.issues[0]?.path.join(".")}: ${parsed.error.issues[0]?.message ?? "invalid"}`, "message"));
    const service = rollouts();
    if (!service) return send(503, apiErrorBody("the hub's rollouts are not running yet", "fleet-not-connected"));
    const user = (req as { lockstepUser?: { name: string } }).lockstepUser;
    const { id, host } = parsed.data;
    service.cancelStep(id, host, `api:${user?.name ?? "unknown"}`).then(
      () => send(200, { cancelled: true, rollout_id: id, host }),
      (err: unknown) => next?.(err),
    );
  };
}

/**
 * GitHub webhook receiver: verifies X-Hub-Signature-256 (HMAC-SHA256 of the raw body with the
 * shared secret, checked by @octokit/webhooks), validates the payload, and asks the watcher for an
 * immediate re-check. Detection is then instant where a webhook is configured; polling stays as
 * the fallback (a lost delivery only delays detection until the next poll).
 *
 * Two ways in:
 * - `verifyAndParse(rawBody, headers, secret)`: pure (no I/O); use it from any HTTP stack.
 * - `createWebhookHandler({...})`: a plain node:http (req, res) handler. It needs the RAW body:
 *   mount it before any JSON body parser (in Node-RED: RED.httpNode.post(path, handler); an
 *   http-in node parses the body first, so use the pure function with its raw body instead).
 *   A `req.rawBody` Buffer, when a framework already read the stream, is used as is.
 *
 * Answers: 202 re-check triggered / event ignored, 200 ping, 400 bad JSON or payload,
 * 401 missing or wrong signature, 405 not POST, 413 too large, 415 not JSON.
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import { Webhooks } from "@octokit/webhooks";
import type { Logger } from "pino";
import { z } from "zod";
import { LockstepError } from "../protocol/errors.js";
import { Secret, createGitHubLogger } from "./config.js";

export const HANDLED_EVENTS = ["pull_request", "check_suite", "check_run", "status", "push"] as const;
export type HandledEvent = (typeof HANDLED_EVENTS)[number];

export const DEFAULT_MAX_BODY_BYTES = 5 * 1024 * 1024;

export class WebhookError extends LockstepError {
  override name = "WebhookError";
  constructor(readonly status: 400 | 401 | 405 | 413 | 415, message: string, hint: string) {
    super(message, `webhook-${status}`, hint);
  }
}

const repository = z.object({ full_name: z.string() });
const sha = z.string().regex(/^[0-9a-f]{40}$/);
const PAYLOADS = {
  pull_request: z.object({
    action: z.string(),
    number: z.number().int(),
    pull_request: z.object({ head: z.object({ ref: z.string(), sha }), base: z.object({ ref: z.string() }) }),
    repository,
  }),
  check_suite: z.object({ action: z.string(), check_suite: z.object({ head_sha: sha }), repository }),
  check_run: z.object({ action: z.string(), check_run: z.object({ head_sha: sha, name: z.string() }), repository }),
  status: z.object({ sha, state: z.string(), context: z.string(), repository }),
  push: z.object({ ref: z.string(), after: z.string(), repository }),
} satisfies Record<HandledEvent, z.ZodType>;

export interface WebhookEvent {
  name: HandledEvent | "ping" | string;
  deliveryId: string;
  action?: string;
  repository?: string;
  /** True when the event should trigger a re-check (a handled event for our repository). */
  recheck: boolean;
  /** One line for logs and audit: "pull_request synchronize #12", "status success ci/test". */
  summary: string;
}

const verifiers = new Map<string, Webhooks>();
function verifierFor(secret: string): Webhooks {
  let v = verifiers.get(secret);
  if (!v) {
    v = new Webhooks({ secret });
    verifiers.set(secret, v);
  }
  return v;
}

function header(headers: Record<string, string | string[] | undefined>, name: string): string | undefined {
  const v = headers[name] ?? headers[name.toLowerCase()];
  return Array.isArray(v) ? v[0] : v;
}

/**
 * Verify the signature and parse one delivery. `repository` ("owner/repo"), when given, marks
 * events for other repositories as not relevant. Throws WebhookError (401 for the signature).
 */
export async function verifyAndParse(
  rawBody: string | Buffer,
  headers: Record<string, string | string[] | undefined>,
  secret: string | Secret,
  opts: { repository?: string; maxBodyBytes?: number } = {},
): Promise<WebhookEvent> {
  const body = typeof rawBody === "string" ? rawBody : rawBody.toString("utf8");
  if (Buffer.byteLength(body) > (opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES)) {
    throw new WebhookError(413, "webhook body too large", "raise maxBodyBytes if GitHub really sends deliveries this big");
  }
  const signature = header(headers, "x-hub-signature-256");
  if (!signature) throw new WebhookError(401, "webhook has no X-Hub-Signature-256 header", "set the same secret in the GitHub webhook settings and in Lockstep");
  const secretValue = typeof secret === "string" ? secret : secret.reveal();
  const valid = await verifierFor(secretValue).verify(body, signature).catch(() => false);
  if (!valid) throw new WebhookError(401, "webhook signature does not match", "the webhook secret in GitHub and in Lockstep differ");

  const name = header(headers, "x-github-event") ?? "";
  const deliveryId = header(headers, "x-github-delivery") ?? "";
  let json: unknown;
  try {
    json = JSON.parse(body);
  } catch {
    throw new WebhookError(400, "webhook body is not JSON", "set the webhook content type to application/json");
  }
  if (name === "ping") return { name, deliveryId, recheck: false, summary: "ping" };
  if (!(HANDLED_EVENTS as readonly string[]).includes(name)) {
    return { name, deliveryId, recheck: false, summary: `${name || "(no event name)"}: not an event Lockstep uses` };
  }
  const event = name as HandledEvent;
  const parsed = PAYLOADS[event].safeParse(json);
  if (!parsed.success) {
    const issue = parsed.error.issues[0]!;
    throw new WebhookError(400, `webhook ${event} payload invalid at ${issue.path.join(".") || "(top)"}: ${issue.message}`, "this does not look like a GitHub delivery");
  }
  const p = parsed.data as Record<string, unknown> & { repository: { full_name: string }; action?: string };
  const repo = p.repository.full_name;
  const ours = !opts.repository || repo.toLowerCase() === opts.repository.toLowerCase();
  const summary = summarize(event, parsed.data);
  return {
    name: event,
    deliveryId,
    ...(p.action !== undefined ? { action: p.action } : {}),
    repository: repo,
    recheck: ours,
    summary: ours ? summary : `${summary} (for ${repo}, not ${opts.repository})`,
  };
}

function summarize(event: HandledEvent, p: unknown): string {
  switch (event) {
    case "pull_request": {
      const d = p as z.infer<typeof PAYLOADS.pull_request>;
      return `pull_request ${d.action} #${d.number}`;
    }
    case "check_run": {
      const d = p as z.infer<typeof PAYLOADS.check_run>;
      return `check_run ${d.action} ${d.check_run.name}`;
    }
    case "check_suite": {
      const d = p as z.infer<typeof PAYLOADS.check_suite>;
      return `check_suite ${d.action} ${d.check_suite.head_sha.slice(0, 7)}`;
    }
    case "status": {
      const d = p as z.infer<typeof PAYLOADS.status>;
      return `status ${d.state} ${d.context}`;
    }
    case "push": {
      const d = p as z.infer<typeof PAYLOADS.push>;
      return `push ${d.ref} ${d.after.slice(0, 7)}`;
    }
  }
}

export interface WebhookHandlerOptions {
  secret: string | Secret;
  /** The watcher to poke; anything with checkNow(). */
  watcher?: { checkNow(): Promise<unknown> };
  /** Also told about every verified event (audit, Node-RED output). */
  onEvent?: (event: WebhookEvent) => void;
  /** "owner/repo": events for other repositories are acknowledged and ignored. */
  repository?: string;
  maxBodyBytes?: number;
  logger?: Logger;
  /** How many recent delivery ids are remembered to answer a repeated delivery once (default 1,000). */
  rememberDeliveries?: number;
}

/**
 * Delivery ids already handled, the newest `max`. GitHub retries a delivery, and "Redeliver" in its
 * UI sends it again, under the same X-GitHub-Delivery: handled once, a repeat is acknowledged only
 * (no second audit entry or Node-RED message, no second re-check).
 */
class RecentDeliveries {
  private readonly ids = new Set<string>();
  constructor(private readonly max: number) {}

  /** True the first time `id` is seen (an empty id, sent by no GitHub delivery, is never remembered). */
  first(id: string): boolean {
    if (id === "") return true;
    if (this.ids.has(id)) return false;
    this.ids.add(id);
    if (this.ids.size > this.max) this.ids.delete(this.ids.values().next().value as string);
    return true;
  }
}

type RequestWithRawBody = IncomingMessage & { rawBody?: Buffer };

/** A node:http handler; resolves once the answer is sent (the re-check runs on after that). */
export function createWebhookHandler(opts: WebhookHandlerOptions): (req: RequestWithRawBody, res: ServerResponse) => Promise<void> {
  const log = (opts.logger ?? createGitHubLogger()).child({ component: "github-webhooks" });
  const max = opts.maxBodyBytes ?? DEFAULT_MAX_BODY_BYTES;
  const handled = new RecentDeliveries(opts.rememberDeliveries ?? 1_000);
  const reply = (res: ServerResponse, status: number, body: Record<string, unknown>) => {
    if (!res.headersSent) res.writeHead(status, { "content-type": "application/json" }).end(JSON.stringify(body));
  };
  return async (req, res) => {
    try {
      if (req.method !== "POST") throw new WebhookError(405, "webhooks are POSTed", "point the GitHub webhook at this URL with POST");
      const type = (req.headers["content-type"] ?? "").split(";")[0]!.trim();
      if (type !== "application/json") throw new WebhookError(415, `webhook content type ${type || "(none)"} is not application/json`, "set the webhook content type to application/json in GitHub");
      if (Number(req.headers["content-length"] ?? 0) > max) throw new WebhookError(413, "webhook body too large", "raise maxBodyBytes if GitHub really sends deliveries this big");
      const raw = req.rawBody ?? (await readLimited(req, max));
      const event = await verifyAndParse(raw, req.headers, opts.secret, { repository: opts.repository, maxBodyBytes: max });
      if (!handled.first(event.deliveryId)) {
        log.info({ event: event.name, delivery: event.deliveryId }, "webhook: a delivery already handled, acknowledged only");
        return reply(res, 200, { ok: true, event: event.name, delivery: event.deliveryId, duplicate: true });
      }
      log.info({ event: event.name, delivery: event.deliveryId, recheck: event.recheck }, `webhook: ${event.summary}`);
      opts.onEvent?.(event);
      if (event.name === "ping") return reply(res, 200, { ok: true, event: "ping" });
      reply(res, 202, { ok: true, event: event.name, delivery: event.deliveryId, recheck: event.recheck, summary: event.summary });
      if (event.recheck && opts.watcher) void opts.watcher.checkNow();
    } catch (e) {
      if (e instanceof WebhookError) {
        log.warn({ status: e.status, delivery: req.headers["x-github-delivery"] }, `webhook refused: ${e.message}`);
        return reply(res, e.status, { ok: false, error: e.message, hint: e.hint });
      }
      log.error({ err: { message: (e as Error).message } }, "webhook handler failed");
      reply(res, 500, { ok: false, error: "internal error" });
    }
  };
}

function readLimited(req: IncomingMessage, max: number): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    let size = 0;
    req.on("data", (chunk: Buffer) => {
      size += chunk.length;
      if (size > max) {
        req.pause();
        reject(new WebhookError(413, "webhook body too large", "raise maxBodyBytes if GitHub really sends deliveries this big"));
        return;
      }
      chunks.push(chunk);
    });
    req.on("end", () => resolve(Buffer.concat(chunks)));
    req.on("error", reject);
  });
}

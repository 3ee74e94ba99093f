/**
 * The hub's own part of the HTTP API around Node-RED's http-in routes: `GET /api/` lists every
 * route, unknown /api/* routes answer a JSON 404, request bodies are parsed (and refused) here as
 * JSON before Node-RED sees them, and any error on an /api/ path is answered as JSON. Statuses
 * come from the error's code (node-red-nodes/lib/api-errors.ts).
 */
import type { IncomingMessage, ServerResponse } from "node:http";
import type { Logger } from "pino";
import { apiErrorBody, httpStatusForCode } from "../node-red-nodes/lib/api-errors.js";
import { WEBHOOK_PATH, type RequestHandler } from "./node-red.js";

/** API bodies are small JSON objects; anything larger is refused before it is read to the end. */
export const API_BODY_LIMIT = "64kb";

export interface ApiRoute {
  method: string;
  path: string;
  /** Who may call it: any user (reader), an operator, or GitHub with the webhook signature. */
  access: "reader" | "operator" | "signature";
}

export type ErrorHandler = (err: unknown, req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

function sendJson(res: ServerResponse, status: number, body: unknown): void {
  if (res.headersSent) return void res.end();
  res.writeHead(status, { "content-type": "application/json", "cache-control": "no-store" });
  res.end(JSON.stringify(body));
}

function pathOf(req: IncomingMessage & { originalUrl?: string }): string {
  return (req.originalUrl ?? req.url ?? "").split("?")[0] ?? "";
}

const isApiPath = (path: string) => path === "/api" || path.startsWith("/api/");

/** What an express app (Node-RED's httpNode, the hub's own) routes, read from its router. */
interface ExpressLike {
  _router?: { stack: Array<{ route?: { path: unknown; methods: Record<string, boolean> } }> };
  router?: { stack: Array<{ route?: { path: unknown; methods: Record<string, boolean> } }> };
}

export function expressRoutes(app: unknown): Array<{ method: string; path: string }> {
  const router = (app as ExpressLike)._router ?? (app as ExpressLike).router;
  return (router?.stack ?? []).flatMap((layer) =>
    layer.route && typeof layer.route.path === "string"
      ? Object.keys(layer.route.methods).filter((m) => m !== "_all").map((m) => ({ method: m.toUpperCase(), path: layer.route!.path as string }))
      : [],
  );
}

/** Every /api/ route, sorted, without duplicates. */
export function apiRoutes(...apps: unknown[]): ApiRoute[] {
  const seen = new Map<string, ApiRoute>();
  for (const app of apps) {
    for (const { method, path } of expressRoutes(app)) {
      if (!isApiPath(path) || method === "HEAD") continue;
      const access = path === WEBHOOK_PATH ? "signature" : method === "GET" ? "reader" : "operator";
      seen.set(`${method} ${path}`, { method, path, access });
    }
  }
  return [...seen.values()].sort((a, b) => a.path.localeCompare(b.path) || a.method.localeCompare(b.method));
}

/** `GET /api/`: the routes, read when asked (flows deployed in the editor add and remove some). */
export function routeListHandler(routes: () => ApiRoute[]): RequestHandler {
  return (_req, res) => sendJson(res, 200, { routes: routes() });
}

/** After every route: an /api/ path nobody served is a JSON 404; anything else goes on. */
export const apiNotFound: RequestHandler = (req, res, next) => {
  const path = pathOf(req);
  if (!isApiPath(path)) return next?.();
  sendJson(res, 404, { ...apiErrorBody(`no API route ${req.method} ${path}; GET /api/ lists them`, "not-found") });
};

/** An error on an /api/ path is answered as JSON with the status its code stands for. */
export function apiErrorHandler(log: Logger): ErrorHandler {
  return (err, req, res, next) => {
    if (!isApiPath(pathOf(req))) return next(err);
    const e = err as { code?: unknown; status?: unknown; message?: unknown };
    const status = typeof e.status === "number" && e.status >= 400 && e.status < 600 ? e.status : httpStatusForCode(e.code);
    if (status >= 500) log.error({ err, path: pathOf(req) }, "api request failed");
    sendJson(res, status, apiErrorBody(e.message, e.code));
  };
}

/** Does the request carry a body (RFC 9112: a Transfer-Encoding, or a Content-Length above 0)? */
function hasBody(req: IncomingMessage): boolean {
  return req.headers["transfer-encoding"] !== undefined || Number(req.headers["content-length"] ?? 0) > 0;
}

type BodyParser = (req: IncomingMessage, res: ServerResponse, next: (err?: unknown) => void) => void;

/**
 * Parse /api/ JSON bodies before Node-RED's http-in nodes do: theirs answer a bad body with a bare
 * "500 Internal Server Error". A body parsed here is not parsed again (body-parser marks it).
 * The webhook keeps its raw body (its signature is over the bytes).
 */
export function apiBodyParser(): RequestHandler {
  // body-parser comes with express (Node-RED's dependency).
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bodyParser = require("body-parser") as { json(opts: { limit: string }): BodyParser };
  const json = bodyParser.json({ limit: API_BODY_LIMIT });
  return (req, res, next) => {
    const path = pathOf(req);
    if (!isApiPath(path) || path === WEBHOOK_PATH) return next?.();
    json(req, res, (err?: unknown) => {
      // body-parser passes a body of another type on unread (as {}): a route would act as if none was sent.
      if (!err && hasBody(req) && !(req as { _body?: boolean })._body) {
        return sendJson(res, 415, apiErrorBody(`send the request body as JSON (content-type application/json), not ${req.headers["content-type"] || "without a content type"}`, "unsupported-media-type"));
      }
      if (!err) return next?.();
      const e = err as { type?: string; message?: string };
      if (e.type === "entity.too.large") return sendJson(res, 413, apiErrorBody(`the request body is larger than ${API_BODY_LIMIT}`, "body-too-large"));
      sendJson(res, 400, apiErrorBody(`the request body is not valid JSON: ${e.message ?? "parse error"}`, "invalid-json"));
    });
  };
}

/**
 * Node-RED inside the hub: one runtime per process (it cannot be restarted in-process), sharing the
 * hub's HTTP server. The editor lives at /admin behind a login backed by the broker's credential
 * store; http-in nodes serve /api/ behind HTTP Basic auth (the GitHub webhook excepted: it checks
 * its own signature). Our nodes load from dist/node-red-nodes; the shipped flows are copied into
 * the user dir on first start only, so edits made in the editor are never overwritten.
 */
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, readFileSync, readdirSync, writeFileSync } from "node:fs";
import type { Server } from "node:http";
import { join } from "node:path";
import type { Logger } from "pino";
import { loginWithBackoff, type LoginBackoff } from "../broker/login-backoff.js";
import { LockstepError } from "../protocol/errors.js";
import type { LockstepSettings } from "../node-red-nodes/lib/settings.js";
import type { LoginRefusal } from "./refusal-audit.js";

/** The user lookup Node-RED's login and the API's Basic auth share (CredentialStore fits). */
export interface UserDirectory {
  verify(name: string, password: string): Promise<{ name: string; role: string } | null>;
  get(name: string): { name: string; role: string } | undefined;
}

/**
 * The login rules the API and the editor share with the broker: backoff per user+address and per
 * address (broker/login-backoff.ts), and where a refused login is reported (the rate-limited audit).
 */
export interface LoginGate {
  backoff: LoginBackoff;
  refused(refusal: LoginRefusal): void;
}

/** The address a request came from, as the socket says (proxies' headers are not trusted). */
function remoteAddress(req: Req): string {
  return req.socket?.remoteAddress ?? "unknown";
}

/** Roles that may log in to the editor and call POST endpoints. */
export const OPERATOR_ROLES = new Set(["operator", "hub"]);
/** Roles that may read the API (GET). */
export const READER_ROLES = new Set(["viewer", "operator", "hub"]);
/** Verified by its own HMAC signature, not by Basic auth. */
export const WEBHOOK_PATH = "/api/github/webhook";

export const NODES_DIR = join(__dirname, "..", "node-red-nodes");
export const SHIPPED_FLOWS_DIR = join(__dirname, "..", "flows");

// The part of node-red's module we call.
interface RedModule {
  init(server: Server, settings: Record<string, unknown>): void;
  start(): Promise<void>;
  stop(): Promise<void>;
  httpAdmin: RequestHandler;
  httpNode: RequestHandler;
  events: { once(event: string, listener: (...args: unknown[]) => void): void; on(event: string, listener: (...args: unknown[]) => void): void };
}
type Req = import("node:http").IncomingMessage & { originalUrl?: string; lockstepUser?: { name: string; role: string } };
type Res = import("node:http").ServerResponse;
export type RequestHandler = (req: Req, res: Res, next?: (err?: unknown) => void) => void;

/** Merge flows/*.json (each an array of nodes) into one flow file; ids must not clash. */
export function mergeShippedFlows(dir: string): unknown[] {
  const byId = new Map<string, unknown>();
  const files = readdirSync(dir).filter((f) => f.endsWith(".json")).sort();
  for (const file of files) {
    const nodes = JSON.parse(readFileSync(join(dir, file), "utf8")) as unknown;
    if (!Array.isArray(nodes)) throw new LockstepError(`shipped flow ${file} is not a JSON array`, "flows");
    for (const node of nodes as Array<{ id?: string }>) {
      if (typeof node.id !== "string") throw new LockstepError(`shipped flow ${file} has a node without an id`, "flows");
      const prev = byId.get(node.id);
      // Shared config nodes may appear in several files; they must be identical there.
      if (prev !== undefined && JSON.stringify(prev) !== JSON.stringify(node)) {
        throw new LockstepError(`shipped flows define node ${node.id} twice with different content (${file})`, "flows");
      }
      byId.set(node.id, node);
    }
  }
  return [...byId.values()];
}

/** Copy the shipped flows into the user dir unless a flow file is already there. Returns true if copied. */
export function installShippedFlows(userDir: string, flowsDir = SHIPPED_FLOWS_DIR, flowFile = "flows.json"): boolean {
  const target = join(userDir, flowFile);
  if (existsSync(target)) return false;
  mkdirSync(userDir, { recursive: true });
  writeFileSync(target, JSON.stringify(mergeShippedFlows(flowsDir), null, 2));
  return true;
}

/** Node-RED encrypts node credentials with this; generated once, kept next to the other secrets. */
export function credentialSecret(dataDir: string): string {
  const file = join(dataDir, "node-red-credential-secret");
  if (existsSync(file)) return readFileSync(file, "utf8").trim();
  mkdirSync(dataDir, { recursive: true });
  const secret = randomBytes(32).toString("hex");
  writeFileSync(file, secret + "\n", { mode: 0o600 });
  return secret;
}

/** `Authorization: Basic ...` → name and password, or null. */
export function parseBasicAuth(header: string | undefined): { name: string; password: string } | null {
  const m = /^Basic\s+([A-Za-z0-9+/=]+)\s*$/i.exec(header ?? "");
  if (!m) return null;
  const text = Buffer.from(m[1]!, "base64").toString("utf8");
  const colon = text.indexOf(":");
  if (colon < 1) return null;
  return { name: text.slice(0, colon), password: text.slice(colon + 1) };
}

function sendJson(res: Res, status: number, body: unknown, headers: Record<string, string> = {}): void {
  res.writeHead(status, { "content-type": "application/json", ...headers });
  res.end(JSON.stringify(body));
}

/**
 * HTTP Basic auth for every request it sees: any known user may GET, only operator and hub users
 * may change things. On success the user is on `req.lockstepUser` (flows read it as
 * msg.req.lockstepUser). A user+address backing off after failed logins gets 429 with Retry-After,
 * without a password check. The hub puts it in front of GET /metrics; apiAuthMiddleware in front of /api/.
 */
export function basicAuthMiddleware(users: UserDirectory, log: Logger, gate: LoginGate): RequestHandler {
  return (req, res, next) => {
    const path = (req.originalUrl ?? req.url ?? "").split("?")[0] ?? "";
    const creds = parseBasicAuth(req.headers.authorization);
    const challenge = { "www-authenticate": 'Basic realm="Lockstep", charset="UTF-8"' };
    if (!creds) return sendJson(res, 401, { error: "authentication required" }, challenge);
    const address = remoteAddress(req);
    const verify = async () => {
      const user = await users.verify(creds.name, creds.password);
      return user && READER_ROLES.has(user.role) ? user : null;
    };
    loginWithBackoff(gate.backoff, creds.name, address, verify).then(
      (login) => {
        if (!login.ok) {
          log.warn({ user: creds.name, address, path, reason: login.reason }, "api login refused");
          gate.refused({ channel: "api", user: creds.name, address, reason: login.reason });
          if (login.retryAfterMs !== undefined) {
            return sendJson(res, 429, { error: login.reason }, { "retry-after": String(Math.ceil(login.retryAfterMs / 1000)) });
          }
          return sendJson(res, 401, { error: "wrong user name or password" }, challenge);
        }
        const user = login.user;
        const writes = req.method !== "GET" && req.method !== "HEAD";
        if (writes && !OPERATOR_ROLES.has(user.role)) {
          return sendJson(res, 403, { error: `role ${user.role} may not change anything; an operator may` });
        }
        req.lockstepUser = { name: user.name, role: user.role };
        next?.();
      },
      (err: unknown) => {
        log.error({ err }, "api auth failed");
        sendJson(res, 500, { error: "authentication failed" });
      },
    );
  };
}

/** basicAuthMiddleware on /api/ paths (the webhook checks its own signature); other paths pass. */
export function apiAuthMiddleware(users: UserDirectory, log: Logger, gate: LoginGate): RequestHandler {
  const auth = basicAuthMiddleware(users, log, gate);
  return (req, res, next) => {
    const path = (req.originalUrl ?? req.url ?? "").split("?")[0] ?? "";
    if (!path.startsWith("/api/") || path === WEBHOOK_PATH) return next?.();
    auth(req, res, next);
  };
}

/** `GET /api/whoami` for the fleet page; runs after apiAuthMiddleware. */
export const whoamiHandler: RequestHandler = (req, res) => {
  const user = req.lockstepUser;
  if (!user) return sendJson(res, 401, { error: "authentication required" });
  sendJson(res, 200, { user: user.name, role: user.role });
};

/**
 * Node-RED's adminAuth: operator and hub users log in to the editor with full rights. Node-RED's
 * token endpoint refuses a user name after 6 attempts in 10 minutes, right password or not (so six
 * wrong guesses by anyone locked the operator out): editorLoginGuard answers every password login
 * before Node-RED sees it, so only a right password reaches Node-RED (and its count starts over).
 */
export function editorAuth(users: UserDirectory, log: Logger): Record<string, unknown> {
  const asEditorUser = (u: { name: string; role: string } | null | undefined) =>
    u && OPERATOR_ROLES.has(u.role) ? { username: u.name, permissions: "*" } : null;
  return {
    type: "credentials",
    users: async (name: string) => asEditorUser(users.get(name)),
    // Only reached after editorLoginGuard verified the password (the store caches that check).
    authenticate: async (name: string, password: string) => {
      const user = asEditorUser(await users.verify(name, password));
      if (!user) log.warn({ user: name }, "editor login refused");
      return user;
    },
  };
}

/** The editor's login form (OAuth password grant) as Node-RED's token endpoint reads it. */
interface TokenRequestBody {
  grant_type?: unknown;
  username?: unknown;
  password?: unknown;
}

/**
 * In front of Node-RED's `POST /admin/auth/token`: the editor's password login under the same
 * backoff as the API and MQTT. Wrong passwords are answered here (403; 429 while backing off) and
 * never reach Node-RED's own per-name lockout; a right one goes on to Node-RED, which issues the token.
 */
export function editorLoginGuard(users: UserDirectory, log: Logger, gate: LoginGate): RequestHandler {
  // body-parser comes with express (Node-RED's dependency); a body parsed here is not parsed again.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const bodyParser = require("body-parser") as {
    urlencoded(opts: { extended: boolean; limit: string }): RequestHandler;
    json(opts: { limit: string }): RequestHandler;
  };
  const form = bodyParser.urlencoded({ extended: false, limit: "8kb" });
  const json = bodyParser.json({ limit: "8kb" });
  return (req, res, next) => {
    form(req, res, (err1?: unknown) => {
      if (err1) return sendJson(res, 400, { error: "invalid_request" });
      json(req, res, (err2?: unknown) => {
        if (err2) return sendJson(res, 400, { error: "invalid_request" });
        const body = ((req as Req & { body?: TokenRequestBody }).body ?? {}) as TokenRequestBody;
        if (body.grant_type !== "password") return next?.();
        const name = typeof body.username === "string" ? body.username : "";
        const password = typeof body.password === "string" ? body.password : "";
        const address = remoteAddress(req);
        const verify = async () => {
          const user = await users.verify(name, password);
          return user && OPERATOR_ROLES.has(user.role) ? user : null;
        };
        loginWithBackoff(gate.backoff, name, address, verify).then(
          (login) => {
            if (login.ok) return next?.();
            log.warn({ user: name, address, reason: login.reason }, "editor login refused");
            gate.refused({ channel: "editor", user: name, address, reason: login.reason });
            if (login.retryAfterMs !== undefined) {
              return sendJson(res, 429, { error: "too_many_attempts", error_description: login.reason }, { "retry-after": String(Math.ceil(login.retryAfterMs / 1000)) });
            }
            // 403 invalid_grant: what Node-RED (oauth2orize) answers a refused password grant with.
            sendJson(res, 403, { error: "invalid_grant", error_description: "wrong user name or password, or not an operator" });
          },
          (err: unknown) => {
            log.error({ err }, "editor login failed");
            sendJson(res, 500, { error: "server_error" });
          },
        );
      });
    });
  };
}

const NODE_RED_LEVELS: Record<number, "fatal" | "error" | "warn" | "info" | "debug" | "trace"> = {
  10: "fatal",
  20: "error",
  30: "warn",
  40: "info",
  50: "debug",
  60: "trace",
};

/** Node-RED's log messages go to pino, tagged with the node that wrote them. */
export function pinoLogging(log: Logger): Record<string, unknown> {
  return {
    pino: {
      level: log.level === "trace" || log.level === "debug" ? log.level : "info",
      metrics: false,
      audit: false,
      handler: () => (msg: { level: number; msg: unknown; type?: string; id?: string; name?: string }) => {
        const level = NODE_RED_LEVELS[msg.level] ?? "info";
        const text = msg.msg instanceof Error ? msg.msg.message : typeof msg.msg === "string" ? msg.msg : JSON.stringify(msg.msg);
        const fields = msg.type ? { node: { type: msg.type, id: msg.id, name: msg.name } } : {};
        log[level](fields, text);
      },
    },
  };
}

export interface EmbeddedNodeRedOptions {
  server: Server;
  dataDir: string;
  users: UserDirectory;
  log: Logger;
  lockstep: LockstepSettings;
  /** Login backoff and where refused logins go (audit, metrics), shared with the broker. */
  logins: LoginGate;
  /** Runs after the API's auth on every http-in route (the hub parses /api/ bodies here). */
  bodyParser?: RequestHandler;
  /** Default: the compiled node package next to this file. */
  nodesDir?: string;
  flowsDir?: string;
  /** How long to wait for the flows to start. */
  startTimeoutMs?: number;
}

export interface EmbeddedNodeRed {
  userDir: string;
  httpAdmin: RequestHandler;
  httpNode: RequestHandler;
  apiAuth: RequestHandler;
  /** Mount on `POST /admin/auth/token` before httpAdmin (see editorLoginGuard). */
  editorLogin: RequestHandler;
  /** Resolves when the flows are running (Node-RED's start() resolves earlier). */
  start(): Promise<void>;
  stop(): Promise<void>;
}

/** Two middlewares as one: the second runs when the first calls next() without an error. */
function chain(first: RequestHandler, second: RequestHandler): RequestHandler {
  return (req, res, next) => first(req, res, (err?: unknown) => (err ? next?.(err) : second(req, res, next)));
}

/** Initialise Node-RED on the hub's server. Call start() once the server listens. */
export function createEmbeddedNodeRed(opts: EmbeddedNodeRedOptions): EmbeddedNodeRed {
  const userDir = join(opts.dataDir, "node-red");
  mkdirSync(userDir, { recursive: true });
  const copied = installShippedFlows(userDir, opts.flowsDir ?? SHIPPED_FLOWS_DIR);
  if (copied) opts.log.info({ userDir }, "installed the shipped flows (first start)");

  // eslint-style require: node-red is CommonJS without typings.
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const RED = require("node-red") as RedModule;
  const apiAuth = apiAuthMiddleware(opts.users, opts.log, opts.logins);
  const settings: Record<string, unknown> = {
    userDir,
    flowFile: "flows.json",
    credentialSecret: credentialSecret(opts.dataDir),
    nodesDir: [opts.nodesDir ?? NODES_DIR],
    httpAdminRoot: "/admin",
    httpNodeRoot: "/",
    // Auth first, so no body of an unknown caller is read.
    httpNodeMiddleware: opts.bodyParser ? chain(apiAuth, opts.bodyParser) : apiAuth,
    adminAuth: editorAuth(opts.users, opts.log),
    disableEditor: false,
    logging: pinoLogging(opts.log),
    lockstep: opts.lockstep,
    // The palette manager would npm-install into the hub's user dir at runtime: keep it off.
    externalModules: { palette: { allowInstall: false } },
    editorTheme: {
      page: { title: "Lockstep · Node-RED" },
      header: { title: "Lockstep" },
      projects: { enabled: false },
      tours: false,
    },
    diagnostics: { enabled: false },
    telemetry: { enabled: false },
    runtimeState: { enabled: false },
  };
  RED.init(opts.server, settings);

  let started = false;
  return {
    userDir,
    httpAdmin: RED.httpAdmin,
    httpNode: RED.httpNode,
    apiAuth,
    editorLogin: editorLoginGuard(opts.users, opts.log, opts.logins),
    async start() {
      const flowsStarted = new Promise<void>((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new LockstepError("Node-RED flows did not start", "node-red", "see the log above for the node that failed")),
          opts.startTimeoutMs ?? 60_000,
        );
        RED.events.once("flows:started", () => {
          clearTimeout(timer);
          resolve();
        });
      });
      await RED.start();
      started = true;
      await flowsStarted;
    },
    async stop() {
      if (started) await RED.stop();
    },
  };
}

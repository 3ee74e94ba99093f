/**
 * The small part of Node-RED's runtime API our nodes use, typed by hand (there are no maintained
 * typings for Node-RED 4). Kept narrow on purpose: if a node needs more, add it here.
 */

export interface NodeMessage {
  _msgid?: string;
  payload?: unknown;
  topic?: string;
  [key: string]: unknown;
}

export type NodeStatusFill = "red" | "green" | "yellow" | "blue" | "grey";
export interface NodeStatus {
  fill?: NodeStatusFill;
  shape?: "ring" | "dot";
  text?: string;
}

export type SendFn = (msg: NodeMessage | (NodeMessage | NodeMessage[] | null)[] | null) => void;
export type DoneFn = (err?: Error) => void;

/** A runtime node instance (`this` inside a node constructor). */
export interface Node {
  id: string;
  type: string;
  name?: string;
  z?: string;
  credentials?: Record<string, string | undefined>;
  on(event: "input", listener: (msg: NodeMessage, send: SendFn, done: DoneFn) => void | Promise<void>): void;
  on(event: "close", listener: (removed: boolean, done: () => void) => void): void;
  send: SendFn;
  status(status: NodeStatus | Record<string, never>): void;
  log(msg: unknown): void;
  warn(msg: unknown): void;
  error(err: unknown, msg?: NodeMessage): void;
  debug(msg: unknown): void;
}

export interface NodeDef {
  id: string;
  type: string;
  name?: string;
  z?: string;
  [key: string]: unknown;
}

export interface CredentialsDef {
  [key: string]: { type: "text" | "password" };
}

export interface NodeAPI {
  nodes: {
    createNode(node: object, def: NodeDef): void;
    getNode(id: string): unknown;
    registerType(
      type: string,
      constructor: (this: Node & Record<string, unknown>, def: NodeDef) => void,
      opts?: { credentials?: CredentialsDef; settings?: Record<string, { value: unknown; exportable?: boolean }> },
    ): void;
  };
  settings: Record<string, unknown> & { userDir?: string };
  log: {
    info(msg: unknown): void;
    warn(msg: unknown): void;
    error(msg: unknown): void;
    debug(msg: unknown): void;
  };
  httpAdmin: {
    get(path: string, ...handlers: unknown[]): void;
    post(path: string, ...handlers: unknown[]): void;
  };
  /** The express app http-in nodes add their routes to (mounted at httpNodeRoot). */
  httpNode: {
    post(path: string, ...handlers: Array<(req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => unknown>): void;
    /** Express 4 (Node-RED 4) names it _router, Express 5 (Node-RED 5) router. */
    _router?: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> };
    router?: { stack: Array<{ route?: { path: string; methods: Record<string, boolean> } }> };
  };
  auth: {
    needsPermission(permission: string): unknown;
  };
  events: {
    on(event: string, listener: (...args: unknown[]) => void): void;
    removeListener(event: string, listener: (...args: unknown[]) => void): void;
  };
  util: {
    evaluateNodeProperty(value: unknown, type: string, node: Node, msg: NodeMessage, callback?: (err: Error | null, value: unknown) => void): unknown;
  };
  version(): string;
}

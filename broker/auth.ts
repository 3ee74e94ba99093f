/**
 * Who a client is: the CONNECT check of the embedded broker (stored users, the hub process's own
 * user, anonymous viewers when allowed) and the record of which user each connection logged in as.
 */
import type { AuthenticateError, Client } from "aedes";
import type { Logger } from "pino";
import type { Topics } from "../protocol/index.js";
import { canPublish, type AclUser } from "./acl.js";
import { ConnackCode, pendingWill, type EmptyClientIds } from "./aedes-fixes.js";
import { safeEqualStrings, type CredentialStore } from "./credentials.js";
import { loginWithBackoff, type LoginBackoff } from "./login-backoff.js";
import type { SessionOwners } from "./session-owners.js";

/** The hub process's own MQTT user (password random per start, never stored). "$" cannot appear in stored names. */
export const INTERNAL_HUB_USER = "$hub";

/** A logged-in user; createdAt identifies the stored user (absent for the hub and anonymous). */
export type SessionUser = AclUser & { createdAt?: string };

/** Which user each connection authenticated as, and the live connection of each client id. */
export class ClientIdentities {
  private users = new WeakMap<Client, SessionUser>();
  private live = new Map<string, Client>();

  userOf(client: Client): SessionUser | undefined {
    return this.users.get(client);
  }
  bind(client: Client, user: SessionUser): void {
    this.users.set(client, user);
  }
  /** Call when Aedes reports the client ready (after CONNACK). */
  connected(client: Client): void {
    this.live.set(client.id, client);
  }
  disconnected(client: Client): void {
    if (this.live.get(client.id) === client) this.live.delete(client.id);
  }
  liveClient(clientId: string): Client | undefined {
    return this.live.get(clientId);
  }
  liveClients(): IterableIterator<Client> {
    return this.live.values();
  }
  clear(): void {
    this.live.clear();
  }
}

export interface AuthContext {
  credentials: () => CredentialStore;
  allowAnonymous: boolean;
  /** The in-process hub's password for this run ("" when not started). */
  internalHubPassword: () => string;
  topics: Topics;
  identities: ClientIdentities;
  emptyClientIds: EmptyClientIds;
  /** Failed logins per user+address and per address (shared with the API and the editor). */
  backoff: LoginBackoff;
  /** Which user each client id belongs to. */
  sessions: () => SessionOwners;
  logger: Logger;
  /** A refused login, for the broker's "denied" event. */
  onRefused: (info: { clientId: string; user: string; address: string; reason: string }) => void;
}

/** Where a client connects from: the TCP/TLS socket, or the HTTP request a WebSocket came in on. */
export function remoteAddressOf(client: Client): string {
  const c = client as unknown as { conn?: { remoteAddress?: string }; req?: { socket?: { remoteAddress?: string } } };
  return c.req?.socket?.remoteAddress ?? c.conn?.remoteAddress ?? "unknown";
}

type AuthDone = (error: AuthenticateError | null, success: boolean | null) => void;

/** Aedes' `authenticate` hook. */
export function authenticate(ctx: AuthContext, client: Client, username: string | undefined, password: Buffer | undefined, done: AuthDone): void {
  const address = remoteAddressOf(client);
  const refuse = (code: number, reason: string) => {
    ctx.logger.warn({ clientId: client.id, user: username, address, reason }, "mqtt connection refused");
    ctx.onRefused({ clientId: client.id, user: username ?? "", address, reason });
    const err = new Error(reason) as AuthenticateError;
    err.returnCode = code as AuthenticateError["returnCode"];
    done(err, false);
  };
  const accept = (user: SessionUser) => {
    // Before anything else: a session taken by the wrong user loses its queued messages.
    const notYours = user.name === INTERNAL_HUB_USER ? undefined : ctx.sessions().refusal(client.id, user);
    if (notYours) return refuse(ConnackCode.notAuthorized, notYours);
    const holder = ctx.identities.liveClient(client.id);
    const holderUser = holder ? ctx.identities.userOf(holder) : undefined;
    if (holder && !holder.closed && holderUser && holderUser.name !== user.name) {
      // Another user's live session: taking it over would disconnect that client.
      return refuse(ConnackCode.notAuthorized, `client id "${client.id}" is in use by another user`);
    }
    // A will is published by the broker later, possibly by the next broker start with no
    // connection left to check: its topic is checked now, like any publish of this user.
    const will = pendingWill(client);
    if (will?.topic !== undefined && !canPublish(user, will.topic, ctx.topics)) {
      return refuse(ConnackCode.notAuthorized, `last will on ${will.topic}, which this user may not publish to`);
    }
    ctx.identities.bind(client, user);
    ctx.sessions().accepted(client.id, user, client.clean);
    done(null, true);
  };

  if (ctx.emptyClientIds.persistentWithoutClientId(client)) {
    return refuse(ConnackCode.identifierRejected, "a persistent session (clean session off) needs a client id");
  }
  if (username === undefined || username === "") {
    if (ctx.allowAnonymous) return accept({ name: "anonymous", role: "viewer" });
    return refuse(ConnackCode.notAuthorized, "anonymous clients are not allowed");
  }
  const secret = password?.toString("utf8") ?? "";
  if (username === INTERNAL_HUB_USER) {
    const expected = ctx.internalHubPassword();
    return expected !== "" && safeEqualStrings(secret, expected)
      ? accept({ name: INTERNAL_HUB_USER, role: "hub" })
      : refuse(ConnackCode.badUsernameOrPassword, "bad user name or password");
  }
  // Backing off after failed logins: refused before any password check (CONNACK 5: the password
  // may be right, so "bad user name or password" would mislead).
  loginWithBackoff(ctx.backoff, username, address, () => ctx.credentials().verify(username, secret)).then(
    (login) => {
      if (login.ok) return accept({ name: login.user.name, role: login.user.role, createdAt: login.user.createdAt });
      refuse(login.retryAfterMs !== undefined ? ConnackCode.notAuthorized : ConnackCode.badUsernameOrPassword, login.reason);
    },
    (err: Error) => {
      ctx.logger.error({ err: err.message }, "credential check failed");
      refuse(ConnackCode.serverUnavailable, "credential store unreadable");
    },
  );
}

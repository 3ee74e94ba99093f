/**
 * Sessions belong to their user. MQTT lets any client take over a session by its client id: with
 * `clean: false` it gets the session's subscriptions and queued messages, with `clean: true` it
 * wipes them (an agent credential could so take another host's queued command). The embedded
 * broker therefore binds client ids to users:
 * - an agent's ids (`lockstep-agent-<host>`, `lockstep-self-update-<host>`, protocol/client-ids.ts)
 *   are the host's agent user's alone, and an agent user may use no other id: bound by name, so
 *   nothing is stored for the fleet's sessions;
 * - any other persistent session (clean: false) belongs to the user that created it, recorded in a
 *   LevelDB sublevel next to Aedes' own sessions and read once at start (in a cluster: a Redis hash,
 *   and each node learns the others' changes from broker/cluster.ts). A clean connect by the owner
 *   ends the session (Aedes drops it), and the binding with it.
 */
import type { Level } from "level";
import type { Logger } from "pino";
import { agentClientId, hostOfAgentClientId } from "../protocol/index.js";
import type { AclUser } from "./acl.js";

/** Where bindings are kept: a LevelDB sublevel, or a Redis hash in a cluster (broker/cluster.ts). */
export interface OwnerStore {
  put(key: string, value: string): Promise<void>;
  del(key: string): Promise<void>;
  iterator(): AsyncIterable<[string, string]>;
}

export class SessionOwners {
  private owners = new Map<string, string>();
  /** While replaceFrom() reads: every change to the bindings, applied again on the fresh ones. */
  private changesDuringReload: Array<[string, string | undefined]> | undefined;

  private constructor(
    private readonly store: OwnerStore,
    private readonly log: Logger,
  ) {}

  /** Read the bindings kept in `db` (a sublevel of the broker's database). */
  static async open(db: Level<string, Buffer>, log: Logger): Promise<SessionOwners> {
    return SessionOwners.load(db.sublevel<string, string>("lockstep-session-owners", { valueEncoding: "utf8" }), log);
  }

  /** Read the bindings kept in `store`. */
  static async load(store: OwnerStore, log: Logger): Promise<SessionOwners> {
    const owners = new SessionOwners(store, log);
    await owners.replaceFrom(store.iterator());
    return owners;
  }

  /**
   * Take `entries` as the whole set of bindings (after a cluster node lost its Redis connection, a
   * binding another node removed meanwhile must go too: learning the entries one by one would keep it).
   */
  async replaceFrom(entries: AsyncIterable<[string, string]>): Promise<void> {
    const changes: Array<[string, string | undefined]> = [];
    this.changesDuringReload = changes;
    try {
      const fresh = new Map<string, string>();
      for await (const [clientId, user] of entries) fresh.set(clientId, user);
      for (const [clientId, user] of changes) {
        if (user === undefined) fresh.delete(clientId);
        else fresh.set(clientId, user);
      }
      this.owners = fresh;
    } finally {
      this.changesDuringReload = undefined;
    }
  }

  private bind(clientId: string, user: string | undefined): void {
    if (user === undefined) this.owners.delete(clientId);
    else this.owners.set(clientId, user);
    this.changesDuringReload?.push([clientId, user]);
  }

  /** Another broker node bound `clientId` to `user` (or freed it, undefined): already stored there. */
  learn(clientId: string, user: string | undefined): void {
    this.bind(clientId, user);
  }

  /** Why `user` may not use `clientId`, or undefined when it may. */
  refusal(clientId: string, user: AclUser): string | undefined {
    const host = hostOfAgentClientId(clientId);
    if (user.role === "agent") {
      if (host !== user.name) return `an agent may only use its own client ids (${agentClientId(user.name)}), not "${clientId}"`;
      return undefined;
    }
    if (host !== undefined) return `client id "${clientId}" is reserved for the agent of host ${host}`;
    const owner = this.owners.get(clientId);
    if (owner !== undefined && owner !== user.name) return `client id "${clientId}" belongs to another user's persistent session`;
    return undefined;
  }

  /**
   * A connection of `user` with `clientId` was accepted. Recorded in memory at once (a second
   * connect right behind sees it); the write to disk does not hold up the CONNACK.
   */
  accepted(clientId: string, user: AclUser, clean: boolean): void {
    if (hostOfAgentClientId(clientId) !== undefined) return; // bound by name
    const owner = this.owners.get(clientId);
    if (!clean && owner === undefined) {
      this.bind(clientId, user.name);
      this.store.put(clientId, user.name).catch((err: Error) => this.log.error({ err: err.message, clientId }, "cannot store a session's owner"));
    } else if (clean && owner === user.name) {
      this.bind(clientId, undefined);
      this.store.del(clientId).catch((err: Error) => this.log.error({ err: err.message, clientId }, "cannot remove a session's owner"));
    }
  }

  /** Forget the sessions of users that no longer exist (`lockstep users remove`), freeing their ids. */
  forgetUsersExcept(exists: (name: string) => boolean): void {
    for (const [clientId, owner] of this.owners) {
      if (exists(owner)) continue;
      this.bind(clientId, undefined);
      this.store.del(clientId).catch((err: Error) => this.log.error({ err: err.message, clientId }, "cannot remove a session's owner"));
    }
  }

  get size(): number {
    return this.owners.size;
  }
}

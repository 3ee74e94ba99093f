/**
 * Who may publish and subscribe to what. Pure functions over topic strings, shared by the
 * embedded broker (authorizePublish / authorizeSubscribe / authorizeForward) and by the
 * Mosquitto ACL generator, which writes the same rules as ACL lines.
 *
 * Three questions per user:
 * - canPublish(user, topic): may this client write this topic?
 * - canSubscribe(user, filter): may it subscribe with this filter? Only when every topic the
 *   filter could match is readable (agents) or the filter stays inside the readable namespace
 *   (viewers, operators); a wildcard that reaches beyond (`#`, `lockstep/v1/hosts/#` for an agent)
 *   is refused outright.
 * - canReceive(user, topic): may a message on this topic be delivered to it? Checked for every
 *   delivered message, so a viewer's `lockstep/v1/#` never carries a command.
 */
import { Topics, USER_NAME_PATTERN } from "../protocol/index.js";
import type { UserRole } from "./credentials.js";

export interface AclUser {
  name: string;
  role: UserRole;
}

/** The topic patterns (MQTT filters) a role may write and read. Also the source of the Mosquitto ACL. */
export interface RolePatterns {
  publish: string[];
  read: string[];
}

const defaultTopics = new Topics();

/** Patterns for one agent (host id `host`). */
export function agentPatterns(host: string, topics: Topics = defaultTopics): RolePatterns {
  return {
    publish: [
      topics.availability(host),
      topics.info(host),
      topics.compartments(host),
      topics.jobs(host),
      // Previews this host evaluated (for itself, or as a builder for others); the hub checks and
      // republishes them on fleet/previews, so no agent writes another host's fleet state.
      topics.hostPreviews(host),
      topics.haDiscovery(host),
    ],
    read: [
      topics.commands(host),
      // Its own retained state, read back after a restart.
      topics.hostTree(host),
      topics.expected(),
      topics.hubAvailability(),
      topics.haStatus(),
    ],
  };
}

/** Topics a viewer reads: all Lockstep state except commands, plus Home Assistant discovery. */
export function viewerPatterns(topics: Topics = defaultTopics): RolePatterns {
  const any = Topics.ANY_HOST;
  return {
    publish: [],
    read: [
      topics.availability(any),
      topics.info(any),
      topics.compartments(any),
      topics.jobs(any),
      topics.actions(any),
      topics.fleetTree(),
      topics.hubTree(),
      topics.haTree(),
    ],
  };
}

/**
 * Operators read what viewers read and may command hosts (full commands and HA-style actions).
 * Operator `name` may also ask the hub itself, on the hub-actions topic with its own name only, so
 * the topic tells the hub who asked (Home Assistant's "Resume automatic updates" button).
 */
export function operatorPatterns(name: string, topics: Topics = defaultTopics): RolePatterns {
  const viewer = viewerPatterns(topics);
  return {
    publish: [
      topics.commands(Topics.ANY_HOST),
      topics.actions(Topics.ANY_HOST),
      // Home Assistant's birth message, so an HA connected as operator triggers discovery.
      topics.haStatus(),
      ...(USER_NAME_PATTERN.test(name) ? [topics.hubActions(name)] : []),
    ],
    read: viewer.read,
  };
}

/**
 * The patterns of a user, built once per role (and agent or operator name) and topic layout: the embedded broker asks
 * for them on every publish and every delivery. Shared and frozen: callers must not change them.
 */
export function patternsFor(user: AclUser, topics: Topics = defaultTopics): RolePatterns {
  let byUser = patternCache.get(topics);
  if (!byUser) patternCache.set(topics, (byUser = new Map()));
  const key = user.role === "agent" || user.role === "operator" ? `${user.role}:${user.name}` : user.role;
  let patterns = byUser.get(key);
  if (!patterns) {
    patterns = Object.freeze(buildPatterns(user, topics));
    byUser.set(key, patterns);
  }
  return patterns;
}

const patternCache = new WeakMap<Topics, Map<string, RolePatterns>>();

function buildPatterns(user: AclUser, topics: Topics): RolePatterns {
  switch (user.role) {
    case "agent":
      return agentPatterns(user.name, topics);
    case "viewer":
      return viewerPatterns(topics);
    case "operator":
      return operatorPatterns(user.name, topics);
    case "hub":
      return { publish: ["#"], read: ["#"] };
  }
}

/** Filters (not topics) that a viewer or operator may subscribe with: the Lockstep and HA namespaces. */
function namespaceFilters(topics: Topics): string[] {
  return [topics.namespace(), topics.haTree()];
}

// ---------------------------------------------------------------------------------------------
// MQTT matching helpers

/** A concrete topic name: non-empty, no wildcards, no NUL. */
export function isValidTopicName(topic: string): boolean {
  return topic.length > 0 && topic.length <= 65535 && !/[+#\u0000]/.test(topic);
}

/** A valid subscription filter: `+` and `#` only as whole levels, `#` only last. */
export function isValidTopicFilter(filter: string): boolean {
  if (filter.length === 0 || filter.length > 65535 || filter.includes("\u0000")) return false;
  const levels = filter.split("/");
  return levels.every((level, i) => {
    if (level === "#") return i === levels.length - 1;
    if (level === "+") return true;
    return !level.includes("+") && !level.includes("#");
  });
}

/** Does filter `pattern` match topic name `topic`? (MQTT 3.1.1 4.7, including `$` topics.) */
export function topicMatches(pattern: string, topic: string): boolean {
  // Wildcards at the first level never match topics beginning with "$" (e.g. $SYS).
  if (topic.startsWith("$") && (pattern.startsWith("+") || pattern.startsWith("#"))) return false;
  const p = pattern.split("/");
  const t = topic.split("/");
  for (let i = 0; i < p.length; i++) {
    const level = p[i];
    if (level === "#") return true; // also matches the parent level ("a/#" matches "a")
    if (i >= t.length) return false;
    if (level !== "+" && level !== t[i]) return false;
  }
  return p.length === t.length;
}

/**
 * Is every topic that `filter` can match also matched by `pattern`? (Filter containment, so a
 * subscription is only allowed when it cannot reach anything outside the permitted set.)
 */
export function filterCoveredBy(filter: string, pattern: string): boolean {
  const f = filter.split("/");
  const p = pattern.split("/");
  for (let i = 0; i < f.length; i++) {
    const pl = p[i];
    const fl = f[i]!;
    if (pl === "#") return true;
    if (pl === undefined) return false; // filter is deeper than the pattern
    if (fl === "#") {
      // "a/#" also matches "a": the pattern must accept that parent and everything below.
      return false;
    }
    if (fl === "+") {
      if (pl !== "+") return false;
      continue;
    }
    if (pl !== "+" && pl !== fl) return false;
  }
  if (f.length === p.length) return true;
  // The filter is shorter: covered only when the rest of the pattern is exactly "#" ("a/b" vs "a/b/#").
  return p.length === f.length + 1 && p[f.length] === "#";
}

/** Could `filter` match at least one topic that `pattern` also matches? */
export function filtersOverlap(filter: string, pattern: string): boolean {
  const f = filter.split("/");
  const p = pattern.split("/");
  for (let i = 0; ; i++) {
    const fl = f[i];
    const pl = p[i];
    if (fl === "#" || pl === "#") return true;
    if (fl === undefined || pl === undefined) return fl === pl;
    if (fl !== "+" && pl !== "+" && fl !== pl) return false;
  }
}

// ---------------------------------------------------------------------------------------------
// The three checks

export function canPublish(user: AclUser, topic: string, topics: Topics = defaultTopics): boolean {
  if (!isValidTopicName(topic)) return false;
  return patternsFor(user, topics).publish.some((pattern) => topicMatches(pattern, topic));
}

export function canReceive(user: AclUser, topic: string, topics: Topics = defaultTopics): boolean {
  if (!isValidTopicName(topic)) return false;
  return patternsFor(user, topics).read.some((pattern) => topicMatches(pattern, topic));
}

export function canSubscribe(user: AclUser, filter: string, topics: Topics = defaultTopics): boolean {
  if (!isValidTopicFilter(filter)) return false;
  const { read } = patternsFor(user, topics);
  if (user.role === "hub") return true;
  if (user.role === "agent") {
    // Strict: the whole filter must lie inside one readable pattern.
    return read.some((pattern) => filterCoveredBy(filter, pattern));
  }
  // Viewers and operators: broad filters inside the namespace are fine (delivery is filtered by
  // canReceive), but the filter must be able to match something readable: subscribing to
  // `.../hosts/+/commands` alone is refused so the client learns it has no access.
  return (
    namespaceFilters(topics).some((ns) => filterCoveredBy(filter, ns)) &&
    read.some((pattern) => filtersOverlap(filter, pattern))
  );
}

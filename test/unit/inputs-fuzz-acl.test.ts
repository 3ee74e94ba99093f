/**
 * Property tests over the topic strings every MQTT client sends the broker: the access rules
 * (broker/acl.ts, which the embedded broker asks on every publish, subscribe and delivery) against
 * an independent statement of who may do what, for any topic or filter: levels that mean something
 * (host ids, "commands", wildcards) mixed with any text, empty levels and NUL. An agent writes only
 * its own host's state, a viewer writes nothing, an operator writes only commands, HA actions, HA's
 * birth and its own hub-actions topic; no one but the host and the hub ever receives a command.
 *
 * CI runs a fixed seed; `npm run fuzz` runs many more cases (FUZZ_RUNS, FUZZ_SEED).
 */
import fc from "fast-check";
import { describe, expect, it } from "vitest";
import { canPublish, canReceive, canSubscribe, topicMatches, type AclUser } from "../../broker/acl.js";
import { Topics } from "../../protocol/index.js";
import { fuzzParams } from "../support/fuzz.js";

const params = fuzzParams(20261208);

describe.each([new Topics(), new Topics("acme/fleet", "ha")])("fuzz: the broker's access rules (root $root)", (topics) => {
  const root = topics.root.split("/");
  const level = fc.oneof(
    { weight: 4, arbitrary: fc.constantFrom("web-1", "web", "web-10", "db-1", "hosts", "commands", "actions", "jobs", "info", "hub", "fleet", "olga", "home-assistant", "status", "device", "lockstep_web-1", "config", ...root, topics.haPrefix) },
    { weight: 2, arbitrary: fc.constantFrom("+", "#", "", "\u0000", "$SYS", "web-1+", "#x") },
    fc.string({ maxLength: 8 }),
  );
  const levels = fc.oneof(fc.array(level, { minLength: 1, maxLength: 7 }), fc.array(level, { maxLength: 5 }).map((l) => [...root, ...l]), fc.array(level, { maxLength: 4 }).map((l) => [...root, "hosts", ...l]));
  // Real topics of every kind for a few hosts and users, as they are or with one level changed, cut or added.
  const real = fc.constantFrom(
    ...["web-1", "web-10", "db-1"].flatMap((h) => [topics.info(h), topics.availability(h), topics.compartment(h, "git"), topics.job(h, "j-1"), topics.commands(h), topics.actions(h), topics.hostPreview(h, 7, "db-1"), topics.haDiscovery(h)]),
    ...["olga", "vic", "home-assistant"].map((u) => topics.hubActions(u)),
    topics.haStatus(),
    topics.expected(),
    topics.events(),
  );
  const nearReal = fc.tuple(real, fc.nat(), level, fc.constantFrom("replace", "cut", "add")).map(([t, i, l, how]) => {
    const parts = t.split("/");
    const at = i % parts.length;
    if (how === "replace") parts[at] = l;
    if (how === "cut") parts.splice(at, 1);
    if (how === "add") parts.splice(at, 0, l);
    return parts.join("/");
  });
  const topic = fc.oneof(levels.map((l) => l.join("/")), real, nearReal);
  const users: AclUser[] = [
    { name: "web-1", role: "agent" },
    { name: "vic", role: "viewer" },
    { name: "olga", role: "operator" },
  ];
  const hostsPrefix = `${topics.root}/hosts/`;
  /** The host level of a topic under <root>/hosts/, and the level after it. */
  const hostOf = (t: string) => (t.startsWith(hostsPrefix) ? t.slice(hostsPrefix.length).split("/") : undefined);
  const isCommand = (t: string) => {
    const l = hostOf(t);
    return l !== undefined && l.length === 2 && l[1] === "commands";
  };

  it("publish: each role writes only what it owns", () => {
    const allowed = { agent: 0, operator: 0 };
    fc.assert(
      fc.property(topic, (t) => {
        const [agent, viewer, operator] = users.map((u) => canPublish(u!, t, topics));
        expect(viewer).toBe(false);
        if (agent) {
          allowed.agent++;
          const l = hostOf(t);
          const ownState = l !== undefined && l[0] === "web-1" && l.length >= 2 && !["commands", "actions"].includes(l[1]!);
          expect(ownState || t === topics.haDiscovery("web-1"), t).toBe(true);
        }
        if (operator) {
          allowed.operator++;
          const l = hostOf(t);
          const commandOrAction = l !== undefined && l.length === 2 && (l[1] === "commands" || l[1] === "actions");
          expect(commandOrAction || t === topics.haStatus() || t === topics.hubActions("olga"), t).toBe(true);
        }
        // No wildcard, NUL or empty topic is ever a publish.
        if (/[+#\u0000]/.test(t) || t === "") expect(agent || viewer || operator).toBe(false);
      }),
      params,
    );
    // The generator reaches what each role may write, not only refusals.
    expect(allowed.agent * allowed.operator).toBeGreaterThan(0);
  });

  it("receive and subscribe: a command reaches only its host (and the hub), whatever the filter", () => {
    let agentFilters = 0;
    fc.assert(
      fc.property(topic, topic, (t, filter) => {
        for (const u of users.slice(1)) expect(canReceive(u, t, topics) && isCommand(t), `${u.role} ${t}`).toBe(false);
        if (canReceive(users[0]!, t, topics) && isCommand(t)) expect(t).toBe(topics.commands("web-1"));
        // A filter the agent may hold never matches another host's commands or job state.
        if (canSubscribe(users[0]!, filter, topics)) {
          agentFilters++;
          for (const other of ["web-10", "web", "db-1", "x"]) {
            expect(topicMatches(filter, topics.commands(other)), filter).toBe(false);
            expect(topicMatches(filter, topics.job(other, "j-1")), filter).toBe(false);
          }
        }
      }),
      params,
    );
    expect(agentFilters).toBeGreaterThan(0);
  });
});

import pino from "pino";
import { describe, expect, it } from "vitest";
import { SessionOwners, type OwnerStore } from "../../broker/session-owners.js";

/** An OwnerStore in memory; `entries` is what a cluster's Redis hash holds. */
function memoryStore(entries: Map<string, string>): OwnerStore {
  return {
    put: async (k, v) => void entries.set(k, v),
    del: async (k) => void entries.delete(k),
    async *iterator() {
      yield* [...entries];
    },
  };
}
async function* from(pairs: Array<[string, string]>): AsyncGenerator<[string, string]> {
  yield* pairs;
}

describe("SessionOwners", () => {
  const bob = { name: "bob", role: "operator" as const };

  it("replaceFrom drops a binding the shared store no longer has (a node back from a Redis interruption)", async () => {
    const owners = await SessionOwners.load(memoryStore(new Map([["tools", "alice"]])), pino({ level: "silent" }));
    expect(owners.refusal("tools", bob)).toMatch(/another user's persistent session/);
    await owners.replaceFrom(from([["other", "carol"]]));
    expect(owners.refusal("tools", bob)).toBeUndefined();
    expect(owners.refusal("other", bob)).toMatch(/another user's persistent session/);
  });

  it("a change learned while replaceFrom reads is kept", async () => {
    const owners = await SessionOwners.load(memoryStore(new Map()), pino({ level: "silent" }));
    let release!: () => void;
    const gate = new Promise<void>((r) => (release = r));
    async function* slow(): AsyncGenerator<[string, string]> {
      await gate;
      yield ["a", "alice"];
    }
    const reading = owners.replaceFrom(slow());
    owners.learn("late", "carol");
    release();
    await reading;
    expect(owners.refusal("late", bob)).toMatch(/another user's persistent session/);
    expect(owners.refusal("a", bob)).toMatch(/another user's persistent session/);
  });
});

import { describe, expect, it } from "vitest";
import { topicMatches } from "../../broker/acl.js";
import { RetainedIndex } from "../../broker/retained-index.js";

const msg = (topic: string) => ({ topic, payload: Buffer.from(topic), qos: 1 as const });
const topicsOf = (index: RetainedIndex, filter: string) => [...index.match(filter)].map((m) => m.topic).sort();

describe("RetainedIndex", () => {
  it("finds by exact topic, + and #, with MQTT's parent-level and $ rules", () => {
    const index = new RetainedIndex();
    for (const t of ["a", "a/b", "a/b/c", "a/x/c", "b/b", "$SYS/x", "a//c"]) index.set(msg(t));
    expect(topicsOf(index, "a/b")).toEqual(["a/b"]);
    expect(topicsOf(index, "a/+/c")).toEqual(["a//c", "a/b/c", "a/x/c"]);
    expect(topicsOf(index, "a/#")).toEqual(["a", "a//c", "a/b", "a/b/c", "a/x/c"]);
    expect(topicsOf(index, "#")).toEqual(["a", "a//c", "a/b", "a/b/c", "a/x/c", "b/b"]);
    expect(topicsOf(index, "+/b")).toEqual(["a/b", "b/b"]);
    expect(topicsOf(index, "$SYS/#")).toEqual(["$SYS/x"]);
    expect(topicsOf(index, "c/#")).toEqual([]);
  });

  it("replaces, deletes and prunes", () => {
    const index = new RetainedIndex();
    index.set(msg("a/b/c"));
    index.set({ ...msg("a/b/c"), payload: Buffer.from("new") });
    expect(index.size).toBe(1);
    expect(index.get("a/b/c")?.payload.toString()).toBe("new");
    expect(index.delete("a/b")).toBe(false);
    expect(index.delete("a/b/c")).toBe(true);
    expect(index.size).toBe(0);
    expect(topicsOf(index, "#")).toEqual([]);
    expect((index as unknown as { root: { children: Map<string, unknown> } }).root.children.size).toBe(0);
  });

  it("matches exactly what a scan with topicMatches matches (every topic and filter of up to 3 levels)", () => {
    const words = (alphabet: string[], maxLevels: number): string[] => {
      let out: string[][] = alphabet.map((l) => [l]);
      const all = [...out];
      for (let n = 2; n <= maxLevels; n++) {
        out = out.flatMap((prefix) => alphabet.map((l) => [...prefix, l]));
        all.push(...out);
      }
      return all.map((levels) => levels.join("/"));
    };
    const topics = words(["a", "b", "", "$x"], 3);
    const plain = words(["a", "b", "", "+", "$x"], 3);
    const filters = [...plain, "#", ...plain.map((f) => `${f}/#`)];
    const index = new RetainedIndex();
    for (const t of topics) index.set(msg(t));
    for (const f of filters) expect(topicsOf(index, f), f).toEqual(topics.filter((t) => topicMatches(f, t)).sort());
  });
});

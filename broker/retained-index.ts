/**
 * Retained messages indexed by topic level (a topic trie), so a new subscription finds the
 * retained messages it matches by walking the levels of its filter instead of scanning and
 * decoding every retained message (aedes-persistence-level's way: O(retained) per filter, which
 * made connecting N hosts O(N²)). `+` walks one level's children, `#` takes a subtree.
 */
export interface RetainedMessage {
  topic: string;
  payload: Buffer;
  qos: 0 | 1 | 2;
}

interface TrieNode<T> {
  children: Map<string, TrieNode<T>>;
  value?: T;
}

function node<T>(): TrieNode<T> {
  return { children: new Map() };
}

export class RetainedIndex<T extends { topic: string } = RetainedMessage> {
  private root: TrieNode<T> = node();
  private count = 0;

  get size(): number {
    return this.count;
  }

  get(topic: string): T | undefined {
    let at: TrieNode<T> | undefined = this.root;
    for (const level of topic.split("/")) {
      at = at.children.get(level);
      if (!at) return undefined;
    }
    return at.value;
  }

  /** Store `message` under its topic, replacing what was there. */
  set(message: T): void {
    let at = this.root;
    for (const level of message.topic.split("/")) {
      let next = at.children.get(level);
      if (!next) at.children.set(level, (next = node()));
      at = next;
    }
    if (at.value === undefined) this.count++;
    at.value = message;
  }

  /** Forget the message on `topic`; empty branches are pruned so removed topics cost no memory. */
  delete(topic: string): boolean {
    const levels = topic.split("/");
    const path: TrieNode<T>[] = [this.root];
    for (const level of levels) {
      const next = path[path.length - 1]!.children.get(level);
      if (!next) return false;
      path.push(next);
    }
    const leaf = path[path.length - 1]!;
    if (leaf.value === undefined) return false;
    leaf.value = undefined;
    this.count--;
    for (let i = levels.length; i > 0; i--) {
      const n = path[i]!;
      if (n.value !== undefined || n.children.size > 0) break;
      path[i - 1]!.children.delete(levels[i - 1]!);
    }
    return true;
  }

  /** Take over every message of `other` (built aside, e.g. reloaded from the store), dropping this one's. */
  replaceWith(other: RetainedIndex<T>): void {
    this.root = other.root;
    this.count = other.count;
    other.root = node();
    other.count = 0;
  }

  /**
   * Every stored message whose topic the MQTT filter matches (3.1.1 section 4.7): `#` also matches
   * the parent level, and a filter starting with a wildcard matches no topic starting with `$`.
   */
  *match(filter: string): Generator<T> {
    yield* this.walk(this.root, filter.split("/"), 0);
  }

  private *walk(at: TrieNode<T>, levels: string[], i: number): Generator<T> {
    if (i === levels.length) {
      if (at.value !== undefined) yield at.value;
      return;
    }
    const level = levels[i]!;
    if (level === "#") {
      if (at.value !== undefined && i > 0) yield at.value; // "a/#" matches "a"
      yield* this.subtree(at, i === 0);
      return;
    }
    if (level === "+") {
      for (const [name, child] of at.children) {
        if (i === 0 && name.startsWith("$")) continue;
        yield* this.walk(child, levels, i + 1);
      }
      return;
    }
    const child = at.children.get(level);
    if (child) yield* this.walk(child, levels, i + 1);
  }

  /** Every value below `at` (not at itself), iteratively: deep topics must not overflow the stack. */
  private *subtree(at: TrieNode<T>, skipDollar: boolean): Generator<T> {
    const stack: TrieNode<T>[] = [];
    for (const [name, child] of at.children) if (!(skipDollar && name.startsWith("$"))) stack.push(child);
    while (stack.length > 0) {
      const n = stack.pop()!;
      if (n.value !== undefined) yield n.value;
      for (const child of n.children.values()) stack.push(child);
    }
  }
}

/**
 * The data dir fails mid-rollout: read-only, then full. A real hub process in its own mount
 * namespace on a 24 MiB tmpfs, with two MQTT agents (test/support/storage-fault-hub.ts, the same
 * set-up as test/integration/hub-storage-faults.test.ts).
 */
import { Checks, seconds, type FaultRow, type RowContext } from "../row.js";
import { StorageFaultHub } from "../../support/storage-fault-hub.js";

/** The hub the storage and step rows share (made by the first that asks; a failed row drops it). */
export function storageHub(ctx: RowContext): Promise<StorageFaultHub> {
  return ctx.shared(
    "storage-hub",
    () => {
      ctx.log("starting a hub in its own mount namespace on a tmpfs, with two MQTT agents");
      return StorageFaultHub.start({ hosts: ["alpha", "beta"] });
    },
    (h) => h.stop(),
  );
}

type Fault = {
  name: string;
  code: "EROFS" | "ENOSPC";
  scenario: string;
  /** Whether the rollout itself must be held (its own write failed), or only the hub faulted. */
  holds: boolean;
  expected: string; inject(h: StorageFaultHub, ctx: RowContext): Promise<void>; clear(h: StorageFaultHub): void };

/** One storage row: a rollout's switch held while the fault comes, then what the hub did and did after recovery. */
function storageRow(f: Fault): FaultRow {
  return {
    name: f.name,
    scenario: f.scenario,
    expected: f.expected,
    speed: "slow",
    timeoutMs: 4 * 60_000,
    async run(ctx) {
      const c = new Checks();
      const h = await storageHub(ctx);
      const host = "alpha";
      const sentBefore = h.agents[host]!.received.length;
      const switching = await h.installHeldAt(host, "switch");
      const id = switching.id;
      ctx.cleanup(switching.release);
      ctx.log(`${host} is switching in rollout ${id}: ${f.code}`);
      await f.inject(h, ctx);
      let cleared = false;
      ctx.cleanup(() => cleared || f.clear(h));
      switching.release();

      const fault = await h.watch
        .until(`hub/storage ${f.code}${f.holds ? ` with rollout ${id} held` : ""}`, () =>
          h.watch.storage?.state === "fault" && h.watch.storage.code === f.code && (!f.holds || h.watch.storage.heldRollouts.includes(id)) ? h.watch.storage : undefined,
        )
        .catch((err: Error) => {
          throw new Error(`${err.message} (hub/storage: ${JSON.stringify(h.watch.storage)}; rollout ${id}: ${h.watch.progress.filter((p) => p.id === id).at(-1)?.state})`);
        });
      c.see(`hub/storage: ${fault.code} (writers ${[...new Set(fault.faults.map((x) => x.writer))].join(", ")}), holds [${fault.heldRollouts.join(", ")}]`);
      c.expect(h.watch.finalStates(id).length === 0, `a final state was published during the fault: ${h.watch.finalStates(id).join(", ")}`);

      const beforeRefusal = h.knownRollouts();
      const refusedBefore = h.lastInstallRefusal();
      await h.install("beta");
      const refusal = await waitFor(() => {
        const line = h.lastInstallRefusal();
        return line !== refusedBefore && line?.includes(`(${f.code} at `) ? line : undefined;
      }, 30_000);
      const newRollouts = h.watch.progress.filter((p) => !beforeRefusal.has(p.id));
      c.see(`new rollout: ${refusal ? `refused (${f.code})` : "not refused"}`);
      c.expect(refusal !== undefined && newRollouts.length === 0, "a new rollout was not refused during the fault");

      f.clear(h);
      cleared = true;
      const t0 = Date.now();
      await h.watch.until("hub/storage ok again", () => (h.watch.storage?.state === "ok" ? true : undefined));
      await h.watch.until(`rollout ${id}'s history`, () => h.watch.history.find((e) => e.rolloutId === id)).catch((err: Error) => {
        const last = h.watch.progress.filter((p) => p.id === id).at(-1);
        throw new Error(`${err.message} (hub/storage ${h.watch.storage?.state}; rollout ${last?.state}, ${host} ${JSON.stringify(last?.hosts[host])}; ${host} got ${h.agents[host]!.received.map((x) => x.op).join(", ")})`);
      });
      const finals = h.watch.finalStates(id);
      const ops = h.agents[host]!.received.slice(sentBefore).map((x) => x.op);
      const stored = await h.storedRollout(id);
      c.see(`recovered; rollout final states [${finals.join(", ")}] ${seconds(Date.now() - t0)} after, stored ${stored?.progress.state ?? "missing"}; ${host} got ${ops.join(", ")}`);
      c.expect(finals.length === 1 && finals[0] === "completed" && stored?.finished === true && stored.progress.state === "completed", "not exactly one final state (completed), or the store disagrees");
      c.expect(new Set(ops).size === ops.length, "a step was sent twice");

      const written = h.auditFile().map((e) => e.action);
      const faultAt = written.lastIndexOf("storage.fault");
      const recoveredAt = written.lastIndexOf("storage.recovered");
      const kept = faultAt >= 0 && recoveredAt > faultAt ? written.slice(faultAt + 1, recoveredAt) : [];
      c.see(`audit on disk: storage.fault, ${kept.length} kept events, storage.recovered; hub.fault ×${written.filter((a) => a === "hub.fault").length}`);
      c.expect(faultAt >= 0 && recoveredAt > faultAt, "storage.fault … storage.recovered is not in the audit file");
      c.expect(!written.includes("hub.fault"), "an unhandled rejection (hub.fault) was audited");
      c.expect(h.hub.child.exitCode === null, `the hub exited (${h.hub.child.exitCode})`);
      return c.outcome();
    },
  };
}

/** Polls the hub's output (a refusal is only logged); resolves undefined after timeoutMs. */
async function waitFor<T>(check: () => T | undefined, timeoutMs: number): Promise<T | undefined> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    const v = check();
    if (v !== undefined || Date.now() > until) return v;
    await new Promise((r) => setTimeout(r, 200));
  }
}

export const dataDirReadOnly = storageRow({
  name: "data-dir-read-only",
  code: "EROFS",
  holds: true,
  expected: "the hub stays up; hub/storage says EROFS and holds the rollout (no final state published); a new rollout is refused; after recovery the rollout ends once (completed), no step twice; audit storage.fault … storage.recovered on disk",
  scenario: "a real hub's data dir (tmpfs, own mount namespace) turns read-only while a host switches in a rollout, then writable again",
  async inject(h) {
    h.makeReadOnly();
  },
  clear: (h) => h.makeWritable(),
});

export const dataDirFull = storageRow({
  name: "data-dir-full",
  code: "ENOSPC",
  holds: false,
  expected: "the hub stays up (no unhandled rejection); hub/storage says ENOSPC; no final state published meanwhile; a new rollout is refused; after recovery the rollout ends once (completed), no step twice; audit storage.fault … storage.recovered on disk",
  scenario: "a real hub's data dir (tmpfs, own mount namespace) fills up while a host switches in a rollout and an agent with a will reconnects, then is freed",
  async inject(h) {
    h.fill();
    // What is left in the pages of open files goes with the agents' retained messages.
    const full = h.watch.until("hub/storage ENOSPC", () => (h.watch.storage?.state === "fault" && h.watch.storage.code === "ENOSPC" ? true : undefined));
    let filled = false;
    void full.then(() => (filled = true), () => undefined);
    for (let i = 0; i < 500 && !filled; i++) await h.agents.beta!.republish();
    await full;
    // Aedes deletes (and stores) the reconnecting agent's will: both fail on this disk.
    await h.agents.beta!.reconnect();
  },
  clear: (h) => h.freeSpace(),
});

import { Topics } from "../../../protocol/index.js";
import { Checks, mib, seconds, type FaultRow } from "../row.js";
import { startRowBroker } from "./embedded-broker.js";

const topics = new Topics();
const MIB = 2 ** 20;

/** Aedes stored a SUBSCRIBE's whole filter list once per filter: 10,000 filters took 11.6 GB (issue 14). */
export const manyFilters: FaultRow = {
  name: "many-filter-subscribes",
  scenario: "a viewer with a persistent session sends one SUBSCRIBE with 10,000 filters, then subscribes one filter at a time 600 times",
  expected: "the big SUBSCRIBE refused whole (64 filters default), memory flat; single subscriptions stop at 512 per client; refusals reported",
  speed: "fast",
  async run(ctx) {
    const c = new Checks();
    const rb = await startRowBroker(ctx);
    const { broker } = rb;
    const viewer = await broker.credentials.add("page", "viewer");
    const page = await rb.connect({ username: "page", password: viewer.password, clientId: "page-1", clean: false });
    const rss0 = process.memoryUsage().rss;
    const t0 = performance.now();
    const codes = await rb.subscribe(page.client, Array.from({ length: 10_000 }, (_, i) => topics.info(`host-${i}`)));
    const took = performance.now() - t0;
    const rss1 = process.memoryUsage().rss;
    const refused = codes.filter((q) => q === 128).length;
    c.see(`10,000 filters: ${refused} refused in ${seconds(took)}, RSS +${mib(rss1 - rss0)}`);
    c.expect(refused === 10_000, "the 10,000-filter SUBSCRIBE was not refused whole");
    c.expect(rss1 - rss0 < 200 * MIB, "memory grew by more than 200 MiB");

    let granted = 0;
    let firstRefused: number | undefined;
    for (let i = 0; i < 600; i++) {
      const [code] = await rb.subscribe(page.client, [topics.info(`one-${i}`)], 0);
      if (code === 128) firstRefused ??= i;
      else granted++;
    }
    c.see(`one at a time: ${granted} granted, refused from #${firstRefused ?? "never"}`);
    c.expect(granted === 512 && firstRefused === 512, "subscriptions per client were not capped at 512");
    const reported = rb.denied.filter((d) => d.action === "subscribe").length;
    c.see(`${reported} refusals reported`);
    c.expect(reported >= 2, "the refusals were not reported");
    return c.outcome();
  },
};

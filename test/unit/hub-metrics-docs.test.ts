/**
 * The Grafana dashboard (docs/grafana-dashboard.json) and the example alert rules
 * (docs/prometheus-alerts.yml): the dashboard is typed against Grafana's own dashboard model
 * (@grafana/schema, checked by tsc), every PromQL expression parses with Prometheus' own PromQL
 * grammar (@prometheus-io/lezer-promql), and every metric they name is one hub/metrics.ts exports.
 */
import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";
import { z } from "zod";
import { parser as promql } from "@prometheus-io/lezer-promql";
import type { Dashboard, VariableModel, VariableType } from "@grafana/schema";
import dashboardJson from "../../docs/grafana-dashboard.json";
import { HubMetrics } from "../../hub/metrics.js";

const ROOT = join(__dirname, "..", "..");

// JSON imports widen string literals; the one literal-typed field the dashboard uses, a
// variable's `type`, is checked here against the same union, the rest by tsc.
const VARIABLE_TYPES = ["query", "adhoc", "constant", "datasource", "interval", "textbox", "custom", "system"] as const satisfies readonly VariableType[];
const isVariableType = (t: string): t is VariableType => (VARIABLE_TYPES as readonly string[]).includes(t);
const variables: VariableModel[] = dashboardJson.templating.list.map((v) => {
  if (!isVariableType(v.type)) throw new Error(`dashboard variable ${v.name} has type ${v.type}`);
  return { ...v, type: v.type };
});
const dashboard: Dashboard = { ...dashboardJson, templating: { list: variables } };

/** Metric names (and histogram series names) hub/metrics.ts exports. */
async function exportedNames(): Promise<Set<string>> {
  const metrics = new HubMetrics({ fleet: { hosts: () => [], expected: () => undefined, job: () => undefined, onChange: () => () => {} }, broker: () => ({ clients: 0, messages: 0, bytes: 0, queueDropped: 0 }) });
  const families = await metrics.registry.getMetricsAsJSON();
  metrics.stop();
  return new Set(families.flatMap((f) => (String(f.type) === "histogram" ? [`${f.name}_bucket`, `${f.name}_sum`, `${f.name}_count`] : [f.name])));
}

/** Parses a PromQL expression; returns the metric names it selects, or throws on a syntax error. */
function metricNames(expr: string): string[] {
  const names: string[] = [];
  let error: number | undefined;
  promql.parse(expr).iterate({
    enter: (node) => {
      if (node.type.isError) error ??= node.from;
      if (node.name === "Identifier") names.push(expr.slice(node.from, node.to));
    },
  });
  if (error !== undefined) throw new Error(`PromQL syntax error at ${error} in: ${expr}`);
  return names;
}

describe("docs/grafana-dashboard.json", () => {
  it("is a Grafana dashboard with non-overlapping panels on the 24-column grid, each query with its own refId", () => {
    expect(dashboard).toMatchObject({ title: "Lockstep fleet", uid: "lockstep-fleet" });
    expect(typeof dashboard.schemaVersion).toBe("number");
    const panels = dashboard.panels ?? [];
    expect(panels.length).toBeGreaterThan(5);
    expect(new Set(panels.map((p) => p.id)).size).toBe(panels.length);
    const cells = new Set<string>();
    for (const p of panels) {
      const g = p.gridPos!;
      expect(g.x + g.w, `${p.title} fits the grid`).toBeLessThanOrEqual(24);
      for (let x = g.x; x < g.x + g.w; x++) {
        for (let y = g.y; y < g.y + g.h; y++) {
          expect(cells.has(`${x},${y}`), `${p.title} overlaps another panel`).toBe(false);
          cells.add(`${x},${y}`);
        }
      }
      const targets = ("targets" in p ? p.targets : undefined) ?? [];
      expect(targets.length, `${p.title} has queries`).toBeGreaterThan(0);
      expect(new Set(targets.map((t) => t.refId)).size).toBe(targets.length);
    }
  });

  it("queries only metrics the hub exports, in valid PromQL", async () => {
    const exported = await exportedNames();
    const used = new Set<string>();
    for (const p of dashboard.panels ?? []) {
      for (const t of ("targets" in p ? p.targets : undefined) ?? []) {
        const names = metricNames(String((t as { expr?: unknown }).expr));
        expect(names.length).toBeGreaterThan(0);
        for (const n of names) used.add(n);
      }
    }
    expect([...used].filter((n) => !exported.has(n))).toEqual([]);
    // Every exported metric is on the dashboard somewhere.
    const base = (n: string) => n.replace(/_(bucket|sum|count)$/, "");
    expect([...exported].map(base).filter((n) => ![...used].some((u) => base(u) === n))).toEqual([]);
  });
});

const RuleFile = z.strictObject({
  groups: z.array(
    z.strictObject({
      name: z.string().min(1),
      rules: z.array(
        z.strictObject({
          alert: z.string().regex(/^[A-Za-z_][A-Za-z0-9_]*$/),
          expr: z.string().min(1),
          for: z.string().regex(/^\d+[smhdwy]$/).optional(),
          labels: z.record(z.string(), z.string()).optional(),
          annotations: z.record(z.string(), z.string()).optional(),
        }),
      ).min(1),
    }),
  ).min(1),
});

describe("docs/prometheus-alerts.yml", () => {
  const rules = RuleFile.parse(parseYaml(readFileSync(join(ROOT, "docs", "prometheus-alerts.yml"), "utf8"))).groups.flatMap((g) => g.rules);

  it("has the issue's alerts: no update in 7 days, rollout failed, host offline 1 h", () => {
    const byName = new Map(rules.map((r) => [r.alert, r]));
    expect(byName.get("LockstepHostNotUpdated")).toMatchObject({ expr: expect.stringContaining("7 * 86400") });
    expect(byName.get("LockstepRolloutFailed")).toMatchObject({ expr: expect.stringContaining('outcome=~"failed|') });
    expect(byName.get("LockstepHostOffline")).toMatchObject({ expr: "lockstep_host_online == 0", for: "1h" });
  });

  it("uses only metrics the hub exports, in valid PromQL", async () => {
    const exported = await exportedNames();
    for (const r of rules) expect(metricNames(r.expr).filter((n) => !exported.has(n)), r.alert).toEqual([]);
  });
});

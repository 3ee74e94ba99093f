/**
 * The `lockstep` command's one parser, `lockstep hub --help`, and the hub's start steps (each
 * paired with its stop, stopped backwards, a failed start undoes what started).
 */
import pino from "pino";
import { describe, expect, it } from "vitest";
import { ENV_OVERRIDES } from "../../broker/config.js";
import { HUB_ENV_OVERRIDES } from "../../hub/config.js";
import { HUB_PORTS, main, parseCommandLine, type CliIo } from "../../hub/cli.js";
import { startSteps } from "../../hub/steps.js";

function capture(): CliIo & { out: string; err: string } {
  const io = { out: "", err: "", env: {} as NodeJS.ProcessEnv, stdout: (t: string) => void (io.out += t), stderr: (t: string) => void (io.err += t) };
  return io;
}

describe("lockstep command line", () => {
  it("reads global options before and after the subcommand with one parser", () => {
    expect(parseCommandLine(["--data-dir", "/d", "users", "list", "--json"])).toMatchObject({ name: "users", args: ["list"], values: { "data-dir": "/d", json: true } });
    expect(parseCommandLine(["hub", "-c", "/c.json"])).toMatchObject({ name: "hub", args: [], values: { config: "/c.json" } });
  });

  it("answers a usage error with exit code 2 and the option's name", async () => {
    const io = capture();
    expect(await main(["hub", "--nope"], io)).toBe(2);
    expect(io.err).toContain("unknown argument --nope");
    expect(await main(["users", "list", "--data-dir"], io)).toBe(2);
    expect(io.err).toContain("--data-dir needs a value");
  });

  it("`lockstep hub --help` names every port and the variable that sets it", async () => {
    const io = capture();
    expect(await main(["hub", "--help"], io)).toBe(0);
    const portVariables = [...ENV_OVERRIDES, ...HUB_ENV_OVERRIDES].filter((o) => o.path[o.path.length - 1] === "port").map((o) => o.env);
    expect(portVariables.length).toBeGreaterThanOrEqual(4);
    for (const variable of portVariables) expect(io.out).toContain(variable);
    for (const p of HUB_PORTS) expect(io.out).toMatch(new RegExp(`${p.variable}\\s+\\S`));
    expect(io.out).toContain("1880");
    expect(io.out).toContain("1883");
    // Every variable the hub reads is named somewhere.
    for (const o of [...ENV_OVERRIDES, ...HUB_ENV_OVERRIDES]) expect(io.out).toContain(o.env);
  });
});

describe("hub start steps", () => {
  const log = pino({ level: "silent" });

  it("stops the started steps backwards", async () => {
    const order: string[] = [];
    const step = (name: string) => ({
      name,
      start: async () => {
        order.push(`start ${name}`);
        return async () => void order.push(`stop ${name}`);
      },
    });
    const running = await startSteps([step("a"), { name: "no stop", start: async () => undefined }, step("b"), step("c")], log);
    expect(running.names).toEqual(["a", "b", "c"]);
    await running.stop();
    await running.stop();
    expect(order).toEqual(["start a", "start b", "start c", "stop c", "stop b", "stop a"]);
  });

  it("undoes the steps before a failed one and rethrows its error", async () => {
    const order: string[] = [];
    const ok = (name: string) => ({ name, start: async () => async () => void order.push(`stop ${name}`) });
    const boom = new Error("port in use");
    await expect(startSteps([ok("a"), ok("b"), { name: "c", start: () => Promise.reject(boom) }, ok("d")], log)).rejects.toBe(boom);
    expect(order).toEqual(["stop b", "stop a"]);
  });

  it("goes on when a stop hangs or throws", async () => {
    const order: string[] = [];
    const running = await startSteps(
      [
        { name: "a", start: async () => async () => void order.push("stop a") },
        { name: "hangs", start: async () => () => new Promise<void>(() => undefined) },
        { name: "throws", start: async () => () => Promise.reject(new Error("x")) },
      ],
      log,
      50,
    );
    await running.stop();
    expect(order).toEqual(["stop a"]);
  });
});

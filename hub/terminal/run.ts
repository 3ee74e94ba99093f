/** Shared plumbing of the terminal commands: credentials, one session, exit codes, --json. */
import type { CliContext, Values } from "../../broker/commands.js";
import { str, UsageError } from "../../broker/commands.js";
import { resolveCredentials } from "./credentials.js";
import { ExitCode, TerminalError } from "./errors.js";
import { terminalPrompt } from "./prompt.js";
import { HubSession } from "./session.js";

export const JSON_OPTION = { json: { type: "boolean" } } as const;

export interface TerminalContext extends CliContext {
  session: HubSession;
  json: boolean;
  /** Colour only on a terminal, and never with NO_COLOR. */
  colour: boolean;
  print(text: string): void;
  printJson(value: unknown): void;
  /**
   * Resolves on Ctrl-C (SIGINT) or SIGTERM, for follow modes. The first call takes them over from
   * Node's default (exit) until the command ends; call it before the first output, since a script
   * may interrupt as soon as it sees that. A second Ctrl-C still exits.
   */
  interrupted(): Promise<void>;
}

/** Runs a terminal command with a session; maps errors to exit codes and always closes the session. */
export async function withSession(ctx: CliContext, body: (t: TerminalContext) => Promise<number>): Promise<number> {
  let session: HubSession | undefined;
  const interrupts = interruptHandlers();
  try {
    const prompt = terminalPrompt();
    const creds = await resolveCredentials({ ...(str(ctx.values, "config") ? { configFile: str(ctx.values, "config")! } : {}), env: ctx.io.env, ...(prompt ? { prompt } : {}) });
    session = new HubSession(creds);
    const t: TerminalContext = {
      ...ctx,
      session,
      json: ctx.values.json === true,
      colour: process.stdout.isTTY === true && !ctx.io.env.NO_COLOR,
      print: (text) => ctx.io.stdout(text),
      printJson: (value) => ctx.io.stdout(JSON.stringify(value, null, 2) + "\n"),
      interrupted: interrupts.interrupted,
    };
    return await body(t);
  } catch (err) {
    if (err instanceof UsageError) throw err;
    if (err instanceof TerminalError) {
      ctx.io.stderr(`lockstep: ${err.message}\n`);
      return err.exitCode;
    }
    if ((err as Error).name === "CredentialsError") {
      ctx.io.stderr(`lockstep: ${(err as Error).message}\n`);
      return ExitCode.unreachable;
    }
    throw err;
  } finally {
    interrupts.dispose();
    await session?.close();
  }
}

/** Exactly `n` positionals, or a usage error naming the command. */
export function positionals(args: string[], names: string[], command: string, optional = 0): string[] {
  if (args.length < names.length - optional || args.length > names.length) {
    throw new UsageError(`expected ${names.join(" ")}`, `run "lockstep ${command} --help"`);
  }
  return args;
}

/** SIGINT/SIGTERM handlers installed on first use (`interrupted()`) and removed by `dispose()`. */
function interruptHandlers(): { interrupted(): Promise<void>; dispose(): void } {
  let stopped: Promise<void> | undefined;
  let resolve: (() => void) | undefined;
  return {
    interrupted: () =>
      (stopped ??= new Promise<void>((r) => {
        resolve = () => r();
        process.once("SIGINT", resolve);
        process.once("SIGTERM", resolve);
      })),
    dispose: () => {
      if (!resolve) return;
      process.off("SIGINT", resolve);
      process.off("SIGTERM", resolve);
    },
  };
}

export const flag = (values: Values, key: string) => values[key] === true;

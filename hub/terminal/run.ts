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
}

/** Runs a terminal command with a session; maps errors to exit codes and always closes the session. */
export async function withSession(ctx: CliContext, body: (t: TerminalContext) => Promise<number>): Promise<number> {
  let session: HubSession | undefined;
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

/** Resolves on SIGINT/SIGTERM (for follow modes); the returned function removes the handlers. */
export function untilInterrupted(): { stopped: Promise<void>; dispose(): void } {
  let resolve!: () => void;
  const stopped = new Promise<void>((r) => (resolve = r));
  process.once("SIGINT", resolve);
  process.once("SIGTERM", resolve);
  return { stopped, dispose: () => (process.off("SIGINT", resolve), process.off("SIGTERM", resolve)) };
}

export const flag = (values: Values, key: string) => values[key] === true;

/**
 * Building a Command: the one way hub-side senders (FleetClient, the terminal client) put a
 * command together, validated against the schema before it is published.
 */
import { Command, type CommandOp } from "./schemas.js";
import type { z } from "zod";
import type { CommandArgs } from "./schemas.js";

export type CommandArgsOf<O extends CommandOp> = z.input<(typeof CommandArgs)[O]>;

export interface CommandMetaInput {
  id: string;
  requestedBy: string;
  expiresAt: Date;
  issuedAt?: Date;
  rolloutId?: string;
}

/** A validated Command (throws a ZodError naming the field when something is off). */
export function buildCommand<O extends CommandOp>(op: O, args: CommandArgsOf<O>, meta: CommandMetaInput): Command {
  return Command.parse({
    id: meta.id,
    op,
    args,
    issuedAt: (meta.issuedAt ?? new Date()).toISOString(),
    expiresAt: meta.expiresAt.toISOString(),
    requestedBy: meta.requestedBy,
    ...(meta.rolloutId ? { rolloutId: meta.rolloutId } : {}),
  });
}

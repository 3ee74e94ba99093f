import { createHash } from "node:crypto";

/** The fleet identifies a flake.lock by the sha256 (hex) of its exact bytes. */
export function lockHash(contents: string | Uint8Array): string {
  return createHash("sha256").update(contents).digest("hex");
}

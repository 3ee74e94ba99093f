/** Facts about system closures that the self-update and previews compare before and after. */
import { realpath } from "node:fs/promises";
import { rebootNeedOf, type RebootNeed } from "../../protocol/reboot.js";

export type { RebootNeed };

async function resolved(path: string): Promise<string | null> {
  try {
    return await realpath(path);
  } catch {
    return null;
  }
}

/**
 * Resolves each reboot component (kernel, initrd, kernel-modules) in both systems and applies the
 * shared rule (protocol/reboot.ts).
 */
export async function rebootNeeded(bootedSystem: string, newSystem: string, components: readonly string[]): Promise<RebootNeed> {
  const paths = new Map<string, [string | null, string | null]>();
  await Promise.all(
    components.map(async (c) => paths.set(c, await Promise.all([resolved(`${bootedSystem}/${c}`), resolved(`${newSystem}/${c}`)]))),
  );
  return rebootNeedOf(components, (c) => paths.get(c)![0], (c) => paths.get(c)![1]);
}

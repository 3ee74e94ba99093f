/** Facts about system closures that the self-update compares before and after. */
import { realpath } from "node:fs/promises";

async function resolved(path: string): Promise<string | null> {
  try {
    return await realpath(path);
  } catch {
    return null;
  }
}

export interface RebootNeed {
  needed: boolean;
  /** Components whose store path differs between the booted and the new system. */
  changed: string[];
}

/**
 * A reboot is needed when the kernel, initrd or kernel modules of the new system differ from the
 * booted one (what nixos-rebuild cannot switch live). A component missing on one side and present
 * on the other counts as changed; missing on both is no change.
 */
export async function rebootNeeded(bootedSystem: string, newSystem: string, components: string[]): Promise<RebootNeed> {
  const changed: string[] = [];
  for (const c of components) {
    const [booted, next] = await Promise.all([resolved(`${bootedSystem}/${c}`), resolved(`${newSystem}/${c}`)]);
    if (booted !== next) changed.push(c);
  }
  return { needed: changed.length > 0, changed };
}

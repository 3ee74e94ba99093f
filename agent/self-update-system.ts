/** Facts about Nix profiles and system closures that the self-update compares before and after. */
import { readlink, realpath } from "node:fs/promises";
import { basename } from "node:path";

/** The generation a profile points at: /nix/var/nix/profiles/system -> system-42-link gives 42. */
export async function currentGeneration(profile: string): Promise<number | undefined> {
  try {
    const target = await readlink(profile);
    const m = /-(\d+)-link$/.exec(basename(target));
    return m ? Number(m[1]) : undefined;
  } catch {
    return undefined; // no profile yet: the first switch creates generation 1
  }
}

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

/**
 * The one rule for "does this system change need a reboot?", used by the agent's self-update after
 * a switch and by previews before a merge: a reboot is needed when the kernel, initrd or kernel
 * modules differ (what activating a system cannot switch live).
 */

/** Entries of a NixOS system closure (symlinks in its top-level out path) whose change needs a reboot. */
export const REBOOT_COMPONENTS = ["kernel", "initrd", "kernel-modules"] as const;

export interface RebootNeed {
  needed: boolean;
  /** Components whose store path differs between the running (booted) and the new system. */
  changed: string[];
}

/**
 * Compare each component's resolved store path (null = absent) in the booted and the new system.
 * Missing on one side and present on the other counts as changed; missing on both is no change.
 */
export function rebootNeedOf(components: readonly string[], booted: (c: string) => string | null, next: (c: string) => string | null): RebootNeed {
  const changed = components.filter((c) => booted(c) !== next(c));
  return { needed: changed.length > 0, changed };
}

/**
 * Reading a Nix profile's generations from the file system: `<profile>` is a symlink to
 * `<name>-<N>-link`, which points at the store path of generation N. Works the same for
 * /nix/var/nix/profiles/system (NixOS, nix-darwin), Home Manager's profile and the generic one.
 */
import { readdirSync, readlinkSync, realpathSync } from "node:fs";
import { basename, dirname } from "node:path";

export interface ProfileState {
  generation?: number;
  /** Store path of the current generation. */
  path?: string;
}

export function readProfile(profile: string): ProfileState {
  let link: string;
  try {
    link = readlinkSync(profile);
  } catch {
    return {}; // no profile yet: the first switch creates generation 1
  }
  const m = new RegExp(`^${escape(basename(profile))}-(\\d+)-link$`).exec(basename(link));
  const generation = m ? Number(m[1]) : undefined;
  let path: string | undefined;
  try {
    path = realpathSync(profile);
  } catch {
    // a dangling link (its generation garbage-collected): the generation number still holds
  }
  return { ...(generation !== undefined ? { generation } : {}), ...(path ? { path } : {}) };
}

/** All generations present, ascending, with their store paths. */
export function listGenerations(profile: string): Array<{ generation: number; path: string }> {
  const name = basename(profile);
  const re = new RegExp(`^${escape(name)}-(\\d+)-link$`);
  const out: Array<{ generation: number; path: string }> = [];
  let entries: string[];
  try {
    entries = readdirSync(dirname(profile));
  } catch {
    return [];
  }
  for (const e of entries) {
    const m = re.exec(e);
    if (!m) continue;
    try {
      out.push({ generation: Number(m[1]), path: realpathSync(`${dirname(profile)}/${e}`) });
    } catch {
      // a dangling link (garbage-collected generation): skip it
    }
  }
  return out.sort((a, b) => a.generation - b.generation);
}

function escape(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
}

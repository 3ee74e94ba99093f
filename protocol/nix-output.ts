/**
 * Parsers for what Nix tools print about a system change. Pure: the agent runs the tools and hands
 * the text here. Input is bounded (line count, line length) because it comes from a process whose
 * output size we do not control.
 */

/** One package's change between two closures, as `nix store diff-closures` reports it. */
export interface PackageChange {
  /** Package name without version (Nix splits "hello-2.12" at the first "-" before a digit). */
  name: string;
  /** Versions in the old closure that are gone ([] = the package is new). "" is a package without version. */
  old: string[];
  /** Versions in the new closure that were not there before ([] = the package is removed). */
  new: string[];
  /** Change of the package's total size in bytes, when Nix printed one (it omits changes under 8 KiB). */
  sizeDeltaBytes?: number;
}

const MAX_LINES = 5000;
const MAX_LINE = 2000;
// Nix 2.8 writes colours even into a pipe: "\x1b[31;1m+47.9 KiB\x1b[0m".
// eslint-disable-next-line no-control-regex
const ANSI = /\x1b\[[0-9;]*m/g;

function boundedLines(text: string): string[] {
  return text.split("\n", MAX_LINES).map((l) => l.slice(0, MAX_LINE).replace(ANSI, "").replace(/\r$/, ""));
}

/** "∅" is the empty version set; "ε" is the empty version string; the rest is ", "-separated. */
function parseVersions(text: string): string[] {
  const t = text.trim();
  if (t === "∅") return [];
  return t.split(", ").map((v) => (v === "ε" ? "" : v));
}

const SIZE = /^([+-]\d+(?:\.\d+)?) KiB$/;

/**
 * `nix store diff-closures OLD NEW` output → package changes. Each line is
 * "name: OLD → NEW[, ±N.N KiB]" or "name: ±N.N KiB" (a size change without a version change).
 * Lines that fit neither shape (warnings, nested indentation of other modes) are ignored.
 */
export function parseDiffClosures(text: string): PackageChange[] {
  const changes: PackageChange[] = [];
  for (const raw of boundedLines(text)) {
    const line = raw.trim();
    const colon = line.indexOf(": ");
    if (colon <= 0) continue;
    const name = line.slice(0, colon);
    if (/\s/.test(name)) continue;
    let rest = line.slice(colon + 2);
    let sizeDeltaBytes: number | undefined;
    const lastComma = rest.lastIndexOf(", ");
    const sizePart = lastComma >= 0 ? rest.slice(lastComma + 2) : rest;
    const size = SIZE.exec(sizePart);
    if (size) {
      sizeDeltaBytes = Math.round(Number(size[1]) * 1024);
      rest = lastComma >= 0 ? rest.slice(0, lastComma) : "";
    }
    let old: string[] = [];
    let next: string[] = [];
    if (rest !== "") {
      const arrow = rest.indexOf(" → ");
      if (arrow < 0) continue;
      old = parseVersions(rest.slice(0, arrow));
      next = parseVersions(rest.slice(arrow + 3));
    } else if (sizeDeltaBytes === undefined) {
      continue;
    }
    const change: PackageChange = { name, old, new: next };
    if (sizeDeltaBytes !== undefined) change.sizeDeltaBytes = sizeDeltaBytes;
    changes.push(change);
  }
  return changes;
}

/** What `switch-to-configuration dry-activate` says it would do with systemd units. */
export interface UnitChanges {
  stop: string[];
  restart: string[];
  start: string[];
  reload: string[];
  /** Changed units NixOS would leave running (restartIfChanged = false). */
  skipped: string[];
  /** systemd itself would re-exec. */
  restartSystemd: boolean;
}

const UNIT_LINES: ReadonlyArray<[RegExp, keyof Omit<UnitChanges, "restartSystemd">]> = [
  [/^would stop the following units: (.*)$/, "stop"],
  [/^would NOT stop the following changed units: (.*)$/, "skipped"],
  [/^would restart the following units: (.*)$/, "restart"],
  [/^would start the following units: (.*)$/, "start"],
  [/^would reload the following units: (.*)$/, "reload"],
];

/**
 * `switch-to-configuration dry-activate` output (NixOS's Perl script and its Rust successor print
 * the same lines) → unit changes. Lines about user units or anything else are ignored.
 */
export function parseDryActivate(text: string): UnitChanges {
  const out: UnitChanges = { stop: [], restart: [], start: [], reload: [], skipped: [], restartSystemd: false };
  for (const raw of boundedLines(text)) {
    const line = raw.trim();
    if (line === "would restart systemd") {
      out.restartSystemd = true;
      continue;
    }
    for (const [re, key] of UNIT_LINES) {
      const m = re.exec(line);
      if (m) {
        const units = m[1]!.split(", ").map((u) => u.trim()).filter((u) => u !== "");
        out[key] = [...new Set([...out[key], ...units])].sort();
      }
    }
  }
  return out;
}

/**
 * What `nix build --dry-run` (Nix 2.8 prints it on stderr) says it would do: how many derivations
 * it would build and how many paths it would fetch. Nothing to do at all prints neither block.
 */
export function parseDryRun(text: string): { toBuild: number; toFetch: number } {
  let toBuild = 0;
  let toFetch = 0;
  let block: "build" | "fetch" | null = null;
  for (const raw of boundedLines(text)) {
    const line = raw.trim();
    if (/^(this|these) (\d+ )?derivations? will be built:$/i.test(line)) block = "build";
    else if (/^(this|these) (\d+ )?paths? will be fetched/i.test(line)) block = "fetch";
    else if (block && /^\s+\/nix\/store\/\S+$/.test(raw)) {
      if (block === "build") toBuild++;
      else toFetch++;
    } else block = null;
  }
  return { toBuild, toFetch };
}

/** The last `n` non-empty lines of a tool's error output, colour codes removed, each bounded. */
export function lastLines(text: string, n = 12): string {
  const lines = text.replace(ANSI, "").split("\n").map((l) => l.replace(/\s+$/, "")).filter((l) => l !== "");
  return lines.slice(-n).map((l) => l.slice(0, 400)).join("\n");
}

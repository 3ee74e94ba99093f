/**
 * What the hub prints for a person at its terminal: the first-start password in a box that stands
 * out (it is shown once), and the addresses the hub really listens on (by default every interface,
 * so agents on other machines can reach it: the machine's own addresses, not 127.0.0.1).
 */
import { networkInterfaces, type NetworkInterfaceInfo } from "node:os";

/** Lines framed in a box, padded to the longest. */
export function boxed(lines: string[]): string[] {
  const width = Math.max(...lines.map((l) => l.length));
  const bar = "─".repeat(width + 2);
  return [`┌${bar}┐`, ...lines.map((l) => `│ ${l.padEnd(width)} │`), `└${bar}┘`];
}

/** Hosts that mean "every interface" when listened on. */
export const isWildcardHost = (host: string): boolean => host === "0.0.0.0" || host === "::" || host === "";

/** The machine's addresses others can reach (not loopback, not link-local IPv6), IPv4 first. */
export function machineAddresses(interfaces: NodeJS.Dict<NetworkInterfaceInfo[]> = networkInterfaces()): Array<{ name: string; address: string; family: "IPv4" | "IPv6" }> {
  const out: Array<{ name: string; address: string; family: "IPv4" | "IPv6" }> = [];
  for (const [name, infos] of Object.entries(interfaces)) {
    for (const info of infos ?? []) {
      if (info.internal || (info.family === "IPv6" && info.address.toLowerCase().startsWith("fe80:"))) continue;
      out.push({ name, address: info.address, family: info.family });
    }
  }
  return out.sort((a, b) => (a.family === b.family ? 0 : a.family === "IPv4" ? -1 : 1));
}

/** "host:port" as a URL authority (IPv6 in brackets). */
const authority = (address: string, port: number) => (address.includes(":") ? `[${address}]:${port}` : `${address}:${port}`);

/**
 * Where the hub listens, said plainly: the bound address and ports, and for a wildcard bind the
 * URLs other machines use (one per address of this machine).
 */
export function listenLines(opts: { httpHost: string; httpPort: number; mqtt?: { host: string; port: number } }, interfaces?: NodeJS.Dict<NetworkInterfaceInfo[]>): string[] {
  const lines: string[] = [];
  const binds = [{ what: "HTTP", host: opts.httpHost, port: opts.httpPort }, ...(opts.mqtt ? [{ what: "MQTT", host: opts.mqtt.host, port: opts.mqtt.port }] : [])];
  lines.push(`  listening on:      ${binds.map((b) => `${b.what} ${isWildcardHost(b.host) ? "all interfaces" : b.host} port ${b.port}`).join(", ")}`);
  if (binds.some((b) => isWildcardHost(b.host))) {
    const addresses = machineAddresses(interfaces);
    if (addresses.length === 0) lines.push("  reachable at:      (this machine has no address besides loopback)");
    for (const [i, a] of addresses.entries()) {
      const urls = binds.filter((b) => isWildcardHost(b.host)).map((b) => (b.what === "HTTP" ? `http://${authority(a.address, b.port)}/` : `mqtt://${authority(a.address, b.port)}`));
      lines.push(`  ${i === 0 ? "reachable at:     " : "                  "} ${urls.join("  ")} (${a.name})`);
    }
  }
  return lines;
}

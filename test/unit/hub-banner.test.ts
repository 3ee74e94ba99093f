/** What the hub prints: the first password in a box, and the addresses it really listens on. */
import type { NetworkInterfaceInfo } from "node:os";
import { describe, expect, it } from "vitest";
import { boxed, listenLines, machineAddresses } from "../../hub/banner.js";

const nic = (address: string, family: "IPv4" | "IPv6", internal = false) => ({ address, family, internal, netmask: "", mac: "", cidr: null, ...(family === "IPv6" ? { scopeid: 0 } : {}) }) as NetworkInterfaceInfo;
const interfaces = { lo: [nic("127.0.0.1", "IPv4", true), nic("::1", "IPv6", true)], eth0: [nic("fe80::1", "IPv6"), nic("2001:db8::5", "IPv6"), nic("192.168.1.5", "IPv4")] };

describe("hub banner", () => {
  it("frames lines in a box of one width", () => {
    const box = boxed(["password abc", "x"]);
    expect(box).toHaveLength(4);
    expect(new Set(box.map((l) => l.length)).size).toBe(1);
    expect(box[1]).toBe("│ password abc │");
  });

  it("lists the machine's reachable addresses, IPv4 first, without loopback and link-local", () => {
    expect(machineAddresses(interfaces)).toEqual([
      { name: "eth0", address: "192.168.1.5", family: "IPv4" },
      { name: "eth0", address: "2001:db8::5", family: "IPv6" },
    ]);
  });

  it("says a wildcard bind listens on all interfaces and gives the URLs other machines use", () => {
    const lines = listenLines({ httpHost: "0.0.0.0", httpPort: 1880, mqtt: { host: "0.0.0.0", port: 1883 } }, interfaces).join("\n");
    expect(lines).toContain("HTTP all interfaces port 1880, MQTT all interfaces port 1883");
    expect(lines).toContain("http://192.168.1.5:1880/  mqtt://192.168.1.5:1883 (eth0)");
    expect(lines).toContain("http://[2001:db8::5]:1880/");
    expect(lines).not.toContain("127.0.0.1");
  });

  it("names a specific bind address and lists nothing else", () => {
    expect(listenLines({ httpHost: "127.0.0.1", httpPort: 8080 }, interfaces)).toEqual(["  listening on:      HTTP 127.0.0.1 port 8080"]);
  });
});

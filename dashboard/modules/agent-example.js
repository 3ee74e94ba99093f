// The example agent config the empty page offers to copy: filled in with what the page knows
// (the hub's address and MQTT port, the fleet's repository, the topic prefix). No DOM, so
// test/unit/page-agent-example.test.ts checks it against the agent's own config schema.

export const AGENT_CONFIG_PATH = "/etc/lockstep/agent.json";
export const AGENT_PASSWORD_PATH = "/etc/lockstep/agent-password";

/**
 * @param {{ host?: string, hubHost: string, mqttPort?: number, repo?: string, prefix?: string }} o
 *   repo: "owner/repo" on GitHub when the hub knows it.
 */
export function exampleAgentConfig(o) {
  const host = o.host ?? "web-1";
  const hubHost = /:/.test(o.hubHost) && !o.hubHost.startsWith("[") ? `[${o.hubHost}]` : o.hubHost;
  const config = {
    host,
    broker: { url: `mqtt://${hubHost}:${o.mqttPort ?? 1883}`, passwordFile: AGENT_PASSWORD_PATH },
    repo: {
      url: o.repo ? `https://github.com/${o.repo}.git` : "https://github.com/OWNER/REPO.git",
      branch: "main",
      checkoutDir: "/var/lib/lockstep-agent/checkout",
    },
    stateDir: "/var/lib/lockstep-agent",
    os: { kind: "nixos", flakeAttr: host },
  };
  if (o.prefix && o.prefix !== "lockstep") config.topicPrefix = o.prefix;
  return JSON.stringify(config, null, 2);
}

/** The commands that add a host, in order: [where, what it does, the command]. */
export function addHostSteps(host = "web-1") {
  return [
    ["On the hub", "create the host's MQTT user (prints its password once)", `lockstep users add ${host} --role agent`],
    ["On the host", "store that password (paste it, then Ctrl-D)", `sudo install -D -m 600 /dev/stdin ${AGENT_PASSWORD_PATH}`],
    ["On the host", `write ${AGENT_CONFIG_PATH} (below), then check it`, `lockstep-agent check-config --config ${AGENT_CONFIG_PATH}`],
    ["On the host", "start the agent (on NixOS, nix-darwin or Home Manager: services.lockstep-agent, see docs/nix.md)", `sudo lockstep-agent run --config ${AGENT_CONFIG_PATH}`],
  ];
}

/** The agent config the empty fleet page offers to copy is one the agent accepts. */
import { describe, expect, it } from "vitest";
import { AgentConfigSchema } from "../../agent/config.js";
// @ts-expect-error a plain browser ES module (the page's), without types
import { addHostSteps, exampleAgentConfig } from "../../dashboard/modules/agent-example.js";

const example = exampleAgentConfig as (o: { host?: string; hubHost: string; mqttPort?: number; repo?: string; prefix?: string }) => string;

describe("the page's example agent config", () => {
  it("passes the agent's config schema, filled in with the hub's address, port, repository and prefix", () => {
    const text = example({ hubHost: "hub.lan", mqttPort: 18830, repo: "acme/fleet", prefix: "site-a" });
    const config = AgentConfigSchema.parse(JSON.parse(text));
    expect(config.broker.url).toBe("mqtt://hub.lan:18830");
    expect(config.repo.url).toBe("https://github.com/acme/fleet.git");
    expect(config.topicPrefix).toBe("site-a");
    expect(config.host).toBe("web-1");
  });

  it("uses placeholders and the default port when the hub has not said, and brackets an IPv6 address", () => {
    const config = AgentConfigSchema.parse(JSON.parse(example({ hubHost: "::1" })));
    expect(config.broker.url).toBe("mqtt://[::1]:1883");
    expect(config.repo.url).toBe("https://github.com/OWNER/REPO.git");
    expect(config.topicPrefix).toBe("lockstep");
  });

  it("names the same config and password files in the commands", () => {
    const config = JSON.parse(example({ hubHost: "h" })) as { broker: { passwordFile: string } };
    const commands = (addHostSteps as () => string[][])().map((s) => s[2]).join("\n");
    expect(commands).toContain(config.broker.passwordFile);
    expect(commands).toContain("lockstep users add web-1 --role agent");
  });
});

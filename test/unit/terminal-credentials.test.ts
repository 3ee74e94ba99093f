import { mkdtempSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { spawnSync } from "node:child_process";
import { describe, expect, it } from "vitest";
import { CredentialsError, resolveCredentials } from "../../hub/terminal/credentials.js";
import { completionScript } from "../../hub/terminal/completion.js";
import { SUBCOMMANDS } from "../../hub/cli.js";

const dir = () => mkdtempSync(join(tmpdir(), "lockstep-cli-creds-"));

describe("terminal credentials", () => {
  it("reads the config file under HOME, the password from its passwordFile, and derives the MQTT URL", async () => {
    const home = dir();
    const { mkdirSync } = await import("node:fs");
    mkdirSync(join(home, ".config", "lockstep"), { recursive: true });
    writeFileSync(join(home, "pw"), "s3cret\nignored second line\n");
    writeFileSync(join(home, ".config", "lockstep", "cli.json"), JSON.stringify({ hub: "https://hub.example:8443/", user: "alice", passwordFile: "~/pw" }));
    const c = await resolveCredentials({ env: { HOME: home } });
    expect(c).toEqual({ hub: "https://hub.example:8443", user: "alice", password: "s3cret", mqtt: "wss://hub.example:8443/mqtt" });
  });

  it("environment beats the config file; the prompt is asked only when nothing else gives a password", async () => {
    const home = dir();
    const file = join(home, "cli.json");
    writeFileSync(file, JSON.stringify({ user: "alice", password: "from-config" }));
    const asked: string[] = [];
    const prompt = async (q: string) => (asked.push(q), "typed");
    expect((await resolveCredentials({ configFile: file, env: { HOME: home, LOCKSTEP_USER: "bob", LOCKSTEP_PASSWORD: "from-env" }, prompt })).password).toBe("from-env");
    expect((await resolveCredentials({ configFile: file, env: { HOME: home }, prompt })).password).toBe("from-config");
    expect(asked).toEqual([]);
    const c = await resolveCredentials({ env: { HOME: home, LOCKSTEP_USER: "carol" }, prompt });
    expect(c.password).toBe("typed");
    expect(asked).toEqual(["Password for carol at 127.0.0.1:1880: "]);
  });

  it("an empty variable counts as unset: it does not hide the config's user, hub or password file (found by the config fuzzer)", async () => {
    const home = dir();
    const file = join(home, "cli.json");
    writeFileSync(join(home, "pw"), "from-file\n");
    writeFileSync(file, JSON.stringify({ hub: "http://hub:1880", user: "alice", passwordFile: join(home, "pw") }));
    const asked: string[] = [];
    const env = { HOME: home, LOCKSTEP_HUB: "", LOCKSTEP_USER: "", LOCKSTEP_PASSWORD: "", LOCKSTEP_PASSWORD_FILE: "", LOCKSTEP_MQTT_URL: "" };
    const c = await resolveCredentials({ configFile: file, env, prompt: async (q) => (asked.push(q), "typed") });
    expect(c).toEqual({ hub: "http://hub:1880", user: "alice", password: "from-file", mqtt: "ws://hub:1880/mqtt" });
    expect(asked).toEqual([]);
  });

  it("refuses unknown config keys, a missing explicit file and no password without a terminal", async () => {
    const home = dir();
    const file = join(home, "cli.json");
    writeFileSync(file, JSON.stringify({ user: "alice", pasword: "typo" }));
    await expect(resolveCredentials({ configFile: file, env: { HOME: home } })).rejects.toThrow(/pasword/);
    await expect(resolveCredentials({ configFile: join(home, "missing.json"), env: { HOME: home } })).rejects.toBeInstanceOf(CredentialsError);
    await expect(resolveCredentials({ env: { HOME: home, LOCKSTEP_USER: "x" } })).rejects.toThrow(/no password and no terminal/);
  });
});

describe("lockstep completion", () => {
  it("bash completion comes from the command table and is valid bash", () => {
    const script = completionScript("bash", SUBCOMMANDS);
    for (const c of ["status", "deploy", "rollout", "logs", "hub", "users"]) expect(script).toContain(c);
    expect(script).toContain('deploy) opts="--help --json --pr --hosts --canary --yes --no-follow"');
    const r = spawnSync("bash", ["-n"], { input: script });
    expect(r.status, r.stderr?.toString()).toBe(0);
    // Completing "lockstep dep" offers deploy.
    const out = spawnSync("bash", ["-c", `${script}\nCOMP_WORDS=(lockstep dep); COMP_CWORD=1; _lockstep; echo "\${COMPREPLY[@]}"`], { encoding: "utf8" });
    expect(out.stdout.trim()).toBe("deploy");
  });

  it("zsh and fish scripts name every command; another shell is a usage error", () => {
    for (const shell of ["zsh", "fish"]) {
      const script = completionScript(shell, SUBCOMMANDS);
      for (const c of SUBCOMMANDS) expect(script).toContain(c.name);
    }
    expect(() => completionScript("tcsh", SUBCOMMANDS)).toThrow(/bash, zsh or fish/);
  });
});

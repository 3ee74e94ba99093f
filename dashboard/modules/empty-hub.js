// What an empty hub tells a new user, in place: no repository configured (and how to configure
// one), no hosts yet (the exact commands, a copyable agent config), and where the docs are.
import { $, el } from "./dom.js";
import { app } from "./state.js";
import { addHostSteps, exampleAgentConfig } from "./agent-example.js";

/** The docs the hub serves as text (dashboard/server.ts DOCS). */
const DOCS = [
  ["docs/README.md", "Getting started"],
  ["docs/nix.md", "NixOS modules"],
  ["docs/github.md", "GitHub setup"],
  ["docs/node-red.md", "Hub configuration"],
];

export function docsLinks() {
  return el("p", { class: "docs-links host-sub" }, "Docs: ", DOCS.flatMap(([href, text], i) => [i ? " · " : "", el("a", { href, target: "_blank", rel: "noopener", text })]));
}

/** A command or file the user copies: the text and a Copy button (clipboard, or select it). */
export function copyable(text, label) {
  const pre = el("pre", { class: "copy-text" }, text);
  const btn = el("button", {
    type: "button",
    class: "btn small ghost copy",
    "aria-label": `Copy ${label}`,
    text: "Copy",
    onclick: async () => {
      try {
        await navigator.clipboard.writeText(text);
        btn.textContent = "Copied";
      } catch {
        // No clipboard (plain http): select the text so Ctrl-C copies it.
        const range = document.createRange();
        range.selectNodeContents(pre);
        getSelection().removeAllRanges();
        getSelection().addRange(range);
        btn.textContent = "Selected: press Ctrl-C";
      }
    },
  });
  return el("div", { class: "copy-box" }, pre, btn);
}

/** Update card content while the hub has published no fleet/expected yet. */
export function noExpectedState() {
  const status = app.hubStatus;
  if (status?.github.configured === false) {
    return el(
      "div",
      { class: "guide", id: "no-repo" },
      el("strong", { text: "No GitHub repository is configured." }),
      el("p", { text: "The hub watches one repository for lock-update pull requests. Add a github section to the hub config (or set LOCKSTEP_GITHUB_REPO=owner/repo and LOCKSTEP_GITHUB_TOKEN_FILE) and restart the hub:" }),
      copyable(JSON.stringify({ github: { owner: "OWNER", repo: "REPO", tokenFile: "/run/secrets/github-token" } }, null, 2), "hub config"),
      docsLinks(),
    );
  }
  if (status?.github.configured) return el("span", { class: "muted", text: `Waiting for the hub's first look at ${status.github.repo}…` });
  return el("span", { class: "muted", text: "Waiting for the hub to publish the fleet's expected state…" });
}

/** The hosts card's empty state: the commands that add a host. */
export function renderNoHosts(empty) {
  const box = $("hosts-empty");
  box.hidden = !empty;
  $("hosts").hidden = empty; // no column headers over the guidance
  if (!empty) return;
  const s = app.hubStatus;
  const key = JSON.stringify([s?.mqttPort, s?.github.repo, app.config?.prefix]);
  if (box._key === key) return;
  box._key = key;
  const config = exampleAgentConfig({ hubHost: location.hostname, mqttPort: s?.mqttPort, repo: s?.github.repo, prefix: app.config?.prefix });
  box.replaceChildren(
    el(
      "div",
      { class: "guide", id: "no-hosts" },
      el("strong", { text: "No hosts yet." }),
      el("p", { text: "Each host runs lockstep-agent, which connects to this hub's MQTT broker as its own user. To add a host named web-1:" }),
      el(
        "ol",
        { class: "steps" },
        addHostSteps("web-1").map(([where, what, cmd]) => el("li", {}, el("span", {}, el("strong", { text: `${where}: ` }), what), copyable(cmd, what))),
      ),
      el("p", { class: "host-sub", text: "/etc/lockstep/agent.json (every field: agent/README.md):" }),
      copyable(config, "agent config"),
      el("p", { class: "host-sub", text: "The host appears here as soon as its agent connects." }),
      docsLinks(),
    ),
  );
}

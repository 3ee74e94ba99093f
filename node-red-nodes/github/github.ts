/**
 * lockstep-github (config node): the fleet's flake repository on GitHub. Inside `lockstep hub`
 * with every field blank it uses the hub's GitHubService (settings.lockstep.services.github);
 * otherwise it owns one (client with ETag cache, the update watcher, merge and revert). Blank
 * fields take the hub's `github` settings, so the shipped flows work unedited inside the hub.
 */
import { GitHubService } from "../../github/service.js";
import type { GitHubConfigNode } from "../lib/github-connection.js";
import { onClose, optionalNumber, optionalString } from "../lib/input.js";
import { nodeRedLogger } from "../lib/logger.js";
import { lockstepSettings } from "../lib/settings.js";
import { errorText, status } from "../lib/status.js";
import type { Node, NodeAPI, NodeDef } from "../lib/red.js";

export = function register(RED: NodeAPI): void {
  function LockstepGitHubNode(this: GitHubConfigNode, def: NodeDef) {
    RED.nodes.createNode(this, def);
    const node = this;
    const users = new Set<Node>();
    node.register = (user) => {
      users.add(user);
      if (!node.connection) user.status(status.failed(node.configError ?? "GitHub not configured"));
    };
    node.deregister = (user) => {
      users.delete(user);
    };

    // The hub's service outlives this node: only a service of its own is closed with it.
    let shared = false;
    try {
      const settings = lockstepSettings(RED);
      const defaults = settings.github ?? {};
      const own: Record<string, unknown> = {};
      const set = (key: string, value: unknown) => {
        if (value !== undefined) own[key] = value;
      };
      set("owner", optionalString(def.owner));
      set("repo", optionalString(def.repo));
      set("baseBranch", optionalString(def.branch));
      set("apiBaseUrl", optionalString(def.apiUrl));
      set("tokenFile", optionalString(def.tokenFile));
      set("token", optionalString(node.credentials?.token));
      set("webhookSecret", optionalString(node.credentials?.webhookSecret));
      set("mergeMethod", optionalString(def.mergeMethod));
      set("revertMode", optionalString(def.revertMode));
      const pollSeconds = optionalNumber(def.pollInterval);
      if (pollSeconds !== undefined) own.pollIntervalMs = Math.round(pollSeconds * 1000);
      // A token given here replaces a token file from the settings (and the other way round).
      const merged: Record<string, unknown> = { ...defaults, ...own };
      const hubService = Object.keys(own).length === 0 ? settings.services?.github : undefined;
      if (hubService) {
        node.connection = hubService;
        shared = true;
      } else if (!merged.owner || !merged.repo) {
        // How a fresh hub starts: nothing is broken, the update flows wait for a repository.
        node.configError = "no GitHub repository configured";
        node.warn(`${node.configError}: the update flows stay idle until one is (github.owner and github.repo in the hub config, LOCKSTEP_GITHUB_REPO=owner/repo, or this node)`);
      } else {
        if (own.token !== undefined) delete merged.tokenFile;
        if (own.tokenFile !== undefined) delete merged.token;
        node.connection = new GitHubService(merged as never, nodeRedLogger(RED, `lockstep-github:${node.name || node.id}`));
      }
    } catch (err) {
      node.configError = errorText(err);
      node.error(err);
    }

    onClose(node, async () => {
      if (!shared) await node.connection?.close();
    });
  }

  RED.nodes.registerType("lockstep-github", LockstepGitHubNode as unknown as (this: Node, def: NodeDef) => void, {
    credentials: { token: { type: "password" }, webhookSecret: { type: "password" } },
  });
};

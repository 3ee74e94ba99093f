/**
 * The lockstep-github config node as other nodes see it. What it owns (client, watcher, the merge
 * use case, revert) is github/service.ts GitHubService: the hub's, or one of its own in a stock
 * Node-RED.
 */
import type { GitHubService } from "../../github/service.js";
import type { Node } from "./red.js";

export interface GitHubConfigNode extends Node {
  connection?: GitHubService;
  configError?: string;
  register(user: Node): void;
  deregister(user: Node): void;
}

/** Lockstep's GitHub side: detect the lock-update PR, merge it, revert it, receive webhooks. */
export * from "./config.js";
export * from "./errors.js";
export * from "./client.js";
export * from "./detect.js";
export * from "./poller.js";
export * from "./merge.js";
export * from "./revert.js";
export * from "./webhooks.js";

/** The rollout engine's public API (see the report in issue 4 and each file's header). */
export * from "./spec.js";
export * from "./fleet-port.js";
export * from "./errors.js";
export * from "./planner.js";
export * from "./store.js";
export * from "./engine.js";
export * from "./service.js";
export * from "./confirmer.js";

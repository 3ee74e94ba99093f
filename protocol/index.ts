export * from "./schemas.js";
export * from "./topics.js";
export * from "./compartments.js";
export * from "./flake-lock.js";
export * from "./lock-hash.js";
export * from "./errors.js";
export * from "./payload.js";
export * from "./config-file.js";

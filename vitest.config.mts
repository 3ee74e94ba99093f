import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    // The fleet page imports dashboard/generated/protocol.js, built from protocol/ (not in git).
    globalSetup: ["scripts/build-page.mjs"],
    testTimeout: 60_000,
    hookTimeout: 60_000,
    pool: "forks",
    // Two cores: integration suites start brokers, git and nix; more workers only thrash.
    maxWorkers: 2,
    reporters: ["default"],
  },
});

/**
 * Imported first by the agent's CLI, before any other module. An idle agent holds little data,
 * but V8 grows the young generation (the semi-spaces) during the burst of allocation while the
 * modules load and the first state is published, and keeps it: ~12 MB of an idle agent's RSS.
 * Keeping the semi-spaces at their initial size costs a few more (cheap) scavenges while a job
 * runs; an agent spends its life waiting. Measured by test/bench/agent.ts.
 */
import { setFlagsFromString } from "node:v8";

setFlagsFromString("--semi-space-growth-factor=1");

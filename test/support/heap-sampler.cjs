// Preloaded into a hub process by the soak (NODE_OPTIONS=--require): every
// LOCKSTEP_HEAP_SAMPLE_MS (default 10 s) appends one line of process.memoryUsage() with the time
// to the file LOCKSTEP_HEAP_SAMPLES, so memory inside the process can be followed from outside.
const { appendFileSync } = require("node:fs");
const file = process.env.LOCKSTEP_HEAP_SAMPLES;
if (file) {
  const sample = () => appendFileSync(file, JSON.stringify({ at: Date.now(), ...process.memoryUsage() }) + "\n");
  sample();
  setInterval(sample, Number(process.env.LOCKSTEP_HEAP_SAMPLE_MS ?? 10_000)).unref();
}

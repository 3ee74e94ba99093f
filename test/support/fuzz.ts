/**
 * What the property tests over outside inputs share: the run count and seed (CI's fixed seed;
 * `npm run fuzz` sets FUZZ_RUNS and may set FUZZ_SEED) and the arbitraries that start from a valid
 * payload, so the fuzzer reaches past JSON.parse into the schemas.
 */
import fc from "fast-check";

export const FUZZ_RUNS = Number(process.env.FUZZ_RUNS ?? 300);

/** fast-check parameters: FUZZ_RUNS cases, FUZZ_SEED or the test file's own fixed seed. */
export function fuzzParams(defaultSeed: number): { numRuns: number; seed: number } {
  return { numRuns: FUZZ_RUNS, seed: Number(process.env.FUZZ_SEED ?? defaultSeed) };
}

/** A JSON value near `base`: a field dropped, replaced by anything, or the whole thing arbitrary. */
export const near = (base: Record<string, unknown>) =>
  fc.oneof(
    fc.constant(base),
    fc.tuple(fc.constantFrom(...Object.keys(base)), fc.jsonValue({ maxDepth: 3 })).map(([k, v]) => ({ ...base, [k]: v })),
    fc.constantFrom(...Object.keys(base)).map((k) => Object.fromEntries(Object.entries(base).filter(([key]) => key !== k))),
    fc.jsonValue({ maxDepth: 4 }),
  );

/** An MQTT payload: near `base` as JSON, any text, any bytes, or one of `specials` (plus the usual suspects). */
export const payloadOf = (base: Record<string, unknown>, specials: string[] = []) =>
  fc.oneof(
    near(base).map((v) => Buffer.from(JSON.stringify(v))),
    fc.string({ maxLength: 200 }).map((s) => Buffer.from(s)),
    fc.uint8Array({ maxLength: 200 }).map((b) => Buffer.from(b)),
    fc.constantFrom(...[...specials, "", "null", "{}"].map((s) => Buffer.from(s))),
  );

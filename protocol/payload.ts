/** Decoding MQTT payloads: never throws; a bad payload is a value the caller reports. */
import type { z } from "zod";

export type Decoded<T> = { ok: true; value: T } | { ok: false; error: string };

export function formatZodError(err: z.ZodError): string {
  return err.issues
    .slice(0, 5)
    .map((i) => `${i.path.length ? i.path.join(".") : "(payload)"}: ${i.message}`)
    .join("; ");
}

export function decodeJson<S extends z.ZodType>(schema: S, payload: Uint8Array | string): Decoded<z.infer<S>> {
  let json: unknown;
  const text = typeof payload === "string" ? payload : Buffer.from(payload).toString("utf8");
  if (text.length === 0) return { ok: false, error: "empty payload" };
  try {
    json = JSON.parse(text);
  } catch (e) {
    return { ok: false, error: `payload is not JSON: ${(e as Error).message}` };
  }
  const r = schema.safeParse(json);
  return r.success ? { ok: true, value: r.data } : { ok: false, error: formatZodError(r.error) };
}

export function encodeJson(value: unknown): string {
  return JSON.stringify(value);
}

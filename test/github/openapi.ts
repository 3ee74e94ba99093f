/**
 * Checks responses of the local GitHub server against GitHub's published OpenAPI description
 * (@octokit/openapi, the api.github.com spec), so the test server cannot drift from the real API.
 *
 * The spec is 13 MB: it is read once per process, and a validator is compiled lazily per
 * (operation, status, content type) and cached. Component `$ref`s are inlined as `definitions`
 * of a standalone JSON schema holding only what that response needs, which keeps compiles small.
 */
import { readFileSync } from "node:fs";
import { createRequire } from "node:module";
import { dirname, join } from "node:path";
import Ajv, { type ValidateFunction } from "ajv";
import addFormats from "ajv-formats";

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };
type JsonObject = { [k: string]: Json };

interface OpenApiSpec {
  paths: Record<string, Record<string, JsonObject>>;
  components: { schemas: Record<string, Json>; responses: Record<string, JsonObject> };
}

export interface ResponseCheck {
  method: string;
  /** Path template exactly as in the spec, e.g. "/repos/{owner}/{repo}/pulls/{pull_number}". */
  pathTemplate: string;
  status: number;
  /** Parsed JSON body, or undefined for an empty body. */
  body: unknown;
  contentType?: string;
}

/** Resolve "#/components/schemas/x" style pointers inside the spec. */
function resolvePointer(spec: OpenApiSpec, ref: string): Json {
  if (!ref.startsWith("#/")) throw new Error(`unsupported $ref ${ref}`);
  let node: unknown = spec;
  for (const raw of ref.slice(2).split("/")) {
    const key = raw.replace(/~1/g, "/").replace(/~0/g, "~");
    node = (node as Record<string, unknown>)?.[key];
  }
  if (node === undefined) throw new Error(`$ref ${ref} not found in the spec`);
  return node as Json;
}

export class OpenApiChecker {
  private static instance: OpenApiChecker | undefined;
  private readonly validators = new Map<string, ValidateFunction | null>();
  private readonly ajv: Ajv;

  /** How long reading + parsing the spec took (ms). */
  readonly loadMs: number;

  private constructor(private readonly spec: OpenApiSpec, loadMs: number) {
    this.loadMs = loadMs;
    // strict:false because the spec uses OpenAPI keywords (example, x-*) and formats ajv does not
    // know (e.g. "repo.nwo"); ajv v8 understands OpenAPI's `nullable` natively.
    this.ajv = new Ajv({ strict: false, allErrors: false, logger: false, validateFormats: true });
    addFormats(this.ajv);
  }

  /** The process-wide checker; the first call reads the spec. */
  static shared(): OpenApiChecker {
    if (!OpenApiChecker.instance) {
      const started = performance.now();
      const require = createRequire(__filename);
      const pkgDir = dirname(require.resolve("@octokit/openapi/package.json"));
      const spec = JSON.parse(readFileSync(join(pkgDir, "generated", "api.github.com.json"), "utf8")) as OpenApiSpec;
      OpenApiChecker.instance = new OpenApiChecker(spec, performance.now() - started);
    }
    return OpenApiChecker.instance;
  }

  /** Whether the spec has this operation (method + path template). */
  hasOperation(method: string, pathTemplate: string): boolean {
    return Boolean(this.spec.paths[pathTemplate]?.[method.toLowerCase()]);
  }

  /**
   * Validate one response. Returns a list of problems (empty = matches the spec). A status the
   * operation does not declare is itself a problem, except 5xx/403/429 faults, which GitHub can
   * return from any endpoint and are checked against the generic basic-error schema.
   */
  check(r: ResponseCheck): string[] {
    const where = `${r.method.toUpperCase()} ${r.pathTemplate} -> ${r.status}`;
    const op = this.spec.paths[r.pathTemplate]?.[r.method.toLowerCase()];
    if (!op) return [`${where}: operation not in GitHub's OpenAPI description`];
    // A 304 answers a conditional GET on any resource (HTTP semantics; the spec declares it
    // only on some operations). It must have no body.
    if (r.status === 304) return r.body === undefined ? [] : [`${where}: a 304 must not have a body`];
    const validator = this.validatorFor(op, r, where);
    if (validator === "undeclared") return [`${where}: status not declared for this operation`];
    if (validator === null) return []; // declared without a body (e.g. 304, 204)
    if (r.body === undefined) return [`${where}: the spec requires a JSON body, got none`];
    if (validator(r.body)) return [];
    return (validator.errors ?? []).slice(0, 5).map((e) => `${where}: ${e.instancePath || "(root)"} ${e.message ?? "invalid"} ${e.params ? JSON.stringify(e.params) : ""}`);
  }

  /**
   * Validate a request body the client sent (JSON) against the operation's requestBody schema,
   * so the client cannot drift from the API either. Returns problems (empty = fine).
   */
  checkRequest(method: string, pathTemplate: string, body: unknown): string[] {
    const where = `request ${method.toUpperCase()} ${pathTemplate}`;
    const op = this.spec.paths[pathTemplate]?.[method.toLowerCase()];
    if (!op) return [`${where}: operation not in GitHub's OpenAPI description`];
    const key = `request ${method.toLowerCase()} ${pathTemplate}`;
    let validate = this.validators.get(key);
    if (validate === undefined) {
      let requestBody = op.requestBody as JsonObject | undefined;
      if (requestBody && typeof requestBody.$ref === "string") requestBody = resolvePointer(this.spec, requestBody.$ref) as JsonObject;
      const schema = ((requestBody?.content as JsonObject | undefined)?.["application/json"] as JsonObject | undefined)?.schema;
      if (schema === undefined) validate = null;
      else {
        const definitions: Record<string, Json> = {};
        validate = this.ajv.compile({ ...(this.inline(schema, definitions) as JsonObject), definitions });
      }
      this.validators.set(key, validate);
    }
    if (validate === null) return body === undefined ? [] : [`${where}: the operation takes no body`];
    if (body === undefined) return (op.requestBody as JsonObject | undefined)?.required ? [`${where}: a body is required`] : [];
    if (validate(body)) return [];
    return (validate.errors ?? []).slice(0, 5).map((e) => `${where}: ${e.instancePath || "(root)"} ${e.message ?? "invalid"} ${e.params ? JSON.stringify(e.params) : ""}`);
  }

  private validatorFor(op: JsonObject, r: ResponseCheck, where: string): ValidateFunction | null | "undeclared" {
    const mediaType = (r.contentType ?? "application/json").split(";")[0]!.trim();
    const key = `${r.method.toLowerCase()} ${r.pathTemplate} ${r.status} ${mediaType}`;
    if (this.validators.has(key)) return this.validators.get(key)!;
    const responses = op.responses as JsonObject;
    let response = responses[String(r.status)] as JsonObject | undefined;
    const genericFault = r.status >= 500 || r.status === 403 || r.status === 429;
    if (!response && !genericFault) return "undeclared";
    let schema: Json | undefined;
    if (!response) {
      schema = { $ref: "#/components/schemas/basic-error" };
    } else {
      if (typeof response.$ref === "string") response = resolvePointer(this.spec, response.$ref) as JsonObject;
      const content = response.content as JsonObject | undefined;
      if (!content) {
        this.validators.set(key, null);
        return null;
      }
      const media = (content[mediaType] ?? content["application/json"]) as JsonObject | undefined;
      if (!media) throw new Error(`${where}: the spec has no ${mediaType} body for this response`);
      schema = media.schema;
    }
    const definitions: Record<string, Json> = {};
    const root = this.inline(schema ?? {}, definitions);
    const standalone = { ...(root as JsonObject), definitions } as JsonObject;
    const validate = this.ajv.compile(standalone);
    this.validators.set(key, validate);
    return validate;
  }

  /** Copy `node`, rewriting "#/components/schemas/X" refs to "#/definitions/X" and collecting X. */
  private inline(node: Json, definitions: Record<string, Json>, isNameMap = false): Json {
    if (Array.isArray(node)) return node.map((n) => this.inline(n, definitions));
    if (node === null || typeof node !== "object") return node;
    const out: JsonObject = {};
    // OpenAPI 3.0: `nullable: true` allows null even where an `enum` does not list it (GitHub
    // sends conclusion: null for running check runs); JSON Schema needs null in the enum.
    if (!isNameMap && node.nullable === true && Array.isArray(node.enum) && !node.enum.includes(null)) {
      node = { ...node, enum: [...node.enum, null] };
    }
    for (const [k, v] of Object.entries(node)) {
      if (k === "$ref" && typeof v === "string") {
        const m = /^#\/components\/schemas\/(.+)$/.exec(v);
        if (!m) throw new Error(`unsupported $ref ${v}`);
        const name = m[1]!;
        if (!(name in definitions)) {
          definitions[name] = true; // placeholder: breaks cycles
          definitions[name] = this.inline(resolvePointer(this.spec, v), definitions);
        }
        out.$ref = `#/definitions/${name}`;
      } else if (!isNameMap && k === "oneOf") {
        // Read as anyOf: GitHub's alternatives can overlap (basic-error and
        // repository-rule-violation-error both accept any error body), which would make every
        // real answer fail "exactly one".
        out.anyOf = this.inline(v, definitions);
      } else if (!isNameMap && (k === "example" || k === "examples")) {
        continue; // documentation only; can be large (but a property may be *named* "example")
      } else {
        out[k] = this.inline(v, definitions, !isNameMap && (k === "properties" || k === "patternProperties"));
      }
    }
    return out;
  }
}

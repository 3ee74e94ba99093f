/**
 * The Node-RED editor of a running hub, in headless Chromium: the login works, our node types are
 * in the palette, their editor code runs without errors, and every node of the shipped flows is
 * valid by its own editor definition (required config nodes set, validators pass). A screenshot
 * goes to test-results/. Needs `npm run build` and Debian's chromium.
 */
import { mkdirSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, resolve } from "node:path";
import { chromium, type Browser } from "playwright-core";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CredentialStore } from "../../broker/credentials.js";
import { startHubProcess, type HubProcess } from "../demo/hub-process.js";
import { CHROMIUM_ARGS, CHROMIUM_PATH } from "../browser/page-server.js";

const ROOT = resolve(__dirname, "..", "..");
const pkg = JSON.parse(readFileSync(join(ROOT, "package.json"), "utf8")) as { "node-red": { nodes: Record<string, string> } };
const OPERATOR = { name: "editor-op", password: "editor-operator-password" };

describe("the Node-RED editor in a browser", () => {
  let dataDir: string;
  let hub: HubProcess;
  let browser: Browser;
  const pageErrors: string[] = [];
  let result: { types: Record<string, boolean>; invalid: string[]; tabs: string[]; palette: string[] };

  beforeAll(async () => {
    dataDir = mkdtempSync(join(tmpdir(), "lockstep-editor-"));
    const store = await CredentialStore.open(join(dataDir, "credentials.json"));
    await store.add(OPERATOR.name, "operator", OPERATOR.password);
    hub = await startHubProcess({ dataDir, env: { LOCKSTEP_HA_ENABLED: "false" } });
    browser = await chromium.launch({ executablePath: CHROMIUM_PATH, args: CHROMIUM_ARGS });
    const page = await browser.newPage({ viewport: { width: 1400, height: 900 } });
    page.on("pageerror", (err) => pageErrors.push(err.message));
    await page.goto(`${hub.baseUrl}/admin/`);
    await page.fill("#node-dialog-login-username", OPERATOR.name);
    await page.fill("#node-dialog-login-password", OPERATOR.password);
    await page.click("#node-dialog-login-submit");
    await page.waitForSelector('.red-ui-palette-node[data-palette-type="lockstep-deploy"]', { timeout: 30_000 });
    // Give the workspace a moment to draw the imported flows.
    await page.waitForFunction(() => (window as unknown as { RED?: { nodes: { node(id: string): unknown } } }).RED?.nodes.node("lockstep-weekly-deploy") !== undefined, undefined, { timeout: 30_000 });
    const types = Object.keys(pkg["node-red"].nodes);
    result = await page.evaluate((ourTypes) => {
      type EditorNode = { id: string; type: string; valid?: boolean; name?: string };
      const RED = (window as unknown as {
        RED: { nodes: { getType(t: string): unknown; eachNode(cb: (n: EditorNode) => void): void; eachConfig(cb: (n: EditorNode) => void): void; eachWorkspace(cb: (w: { label: string }) => void): void } };
      }).RED;
      const invalid: string[] = [];
      const check = (n: EditorNode) => {
        if (n.type.startsWith("lockstep-") && n.valid === false) invalid.push(`${n.type} ${n.id}`);
      };
      RED.nodes.eachNode(check);
      RED.nodes.eachConfig(check);
      const tabs: string[] = [];
      RED.nodes.eachWorkspace((w) => tabs.push(w.label));
      const palette = Array.from(document.querySelectorAll(".red-ui-palette-node[data-palette-type^='lockstep-']")).map((e) => e.getAttribute("data-palette-type") ?? "");
      return { types: Object.fromEntries(ourTypes.map((t) => [t, RED.nodes.getType(t) !== undefined])), invalid, tabs, palette };
    }, types);
    mkdirSync(join(ROOT, "test-results"), { recursive: true });
    await page.screenshot({ path: join(ROOT, "test-results", "node-red-editor.png") });
  }, 120_000);

  afterAll(async () => {
    await browser?.close();
    await hub?.stop();
    if (dataDir) rmSync(dataDir, { recursive: true, force: true });
  });

  it("knows every node type of the package, and shows the flow nodes in the palette", () => {
    expect(Object.entries(result.types).filter(([, known]) => !known)).toEqual([]);
    const flowNodes = Object.keys(pkg["node-red"].nodes).filter((t) => t !== "lockstep-fleet" && t !== "lockstep-github");
    expect(result.palette.sort()).toEqual(flowNodes.sort());
  });

  it("shows the shipped flows, every lockstep node valid by its own editor definition", () => {
    expect(result.tabs).toEqual(expect.arrayContaining(["Weekly lock update", "Manual merge & deploy (HTTP API)", "GitHub webhook", "Host-driven update (builder)", "Notifications"]));
    expect(result.invalid).toEqual([]);
  });

  it("ran our editor code without errors", () => {
    expect(pageErrors).toEqual([]);
  });
});

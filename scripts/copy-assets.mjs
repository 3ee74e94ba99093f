// tsc emits .js only: copy what Node-RED and the hub load next to it (editor .html, icons, the page).
import { cpSync, existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { dirname, join } from "node:path";

const ASSET = /\.(html|json|css|svg|png|nix|yml|yaml|sh)$/;
function copyTree(from, to) {
  if (!existsSync(from)) return;
  for (const name of readdirSync(from)) {
    const src = join(from, name);
    const dst = join(to, name);
    if (statSync(src).isDirectory()) copyTree(src, dst);
    else if (ASSET.test(name) && !name.endsWith(".test.ts")) {
      mkdirSync(dirname(dst), { recursive: true });
      cpSync(src, dst);
    }
  }
}
for (const dir of ["node-red-nodes", "dashboard", "flows", "test/fleet"]) copyTree(dir, join("dist", dir));
// The fleet page's browser modules are plain .js in the source (tsc compiles only dashboard/server.ts).
mkdirSync(join("dist", "dashboard"), { recursive: true });
for (const name of readdirSync("dashboard")) {
  if (/\.js$/.test(name)) cpSync(join("dashboard", name), join("dist", "dashboard", name));
}

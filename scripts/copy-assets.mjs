// tsc emits .js only: copy what Node-RED and the hub load next to it (editor .html, the shipped flows,
// the fleet page's static files).
import { cpSync, existsSync, mkdirSync, readdirSync, statSync } from "node:fs";
import { join } from "node:path";

function copyTree(from, to, asset) {
  if (!existsSync(from)) return;
  for (const name of readdirSync(from)) {
    const src = join(from, name);
    if (statSync(src).isDirectory()) copyTree(src, join(to, name), asset);
    else if (asset.test(name)) {
      mkdirSync(to, { recursive: true });
      cpSync(src, join(to, name));
    }
  }
}
copyTree("node-red-nodes", join("dist", "node-red-nodes"), /\.html$/);
copyTree("flows", join("dist", "flows"), /\.json$/);
// The page's browser modules are plain .js in the source (tsc compiles only dashboard/server.ts).
copyTree("dashboard", join("dist", "dashboard"), /\.(html|css|svg|js)$/);
copyTree("agent", join("dist", "agent"), /^example-config\.json$/);

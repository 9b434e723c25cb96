// Builds web/dist/: the page's own files from src/ and the vendored libraries from node_modules/.
// No bundler: the page is plain HTML, CSS and ES modules. Run `npm ci && npm run build` in web/.

import { cp, mkdir, readdir, rm, stat } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const src = join(root, "src");
const dist = join(root, "dist");
const vendor = join(dist, "vendor");

// what the page loads (chart) and what its accessibility tests inject (axe)
const VENDORED = [
  ["chart.js/dist/chart.umd.min.js", "chart.umd.min.js"],
  ["chart.js/LICENSE.md", "chart.js.LICENSE.md"],
  ["axe-core/axe.min.js", "axe.min.js"],
  ["axe-core/LICENSE", "axe-core.LICENSE"],
];

async function exists(path) {
  try {
    await stat(path);
    return true;
  } catch {
    return false;
  }
}

await rm(dist, { recursive: true, force: true });
await mkdir(vendor, { recursive: true });

for (const name of await readdir(src)) {
  if (/\.(html|js|mjs|css|svg|ico|png)$/.test(name)) await cp(join(src, name), join(dist, name));
}

for (const [from, to] of VENDORED) {
  const path = join(root, "node_modules", from);
  if (!(await exists(path))) {
    if (from.includes("LICENSE")) continue; // licence files are nice to have
    console.error(`missing ${path}: run \`npm ci\` in web/ first`);
    process.exit(1);
  }
  await cp(path, join(vendor, to));
}

console.log(`built ${dist}`);

// Builds web/dist/: the page's own files from src/ and the vendored libraries from node_modules/.
// No bundler: the page is plain HTML, CSS and ES modules. Run `npm ci && npm run build` in web/.

import { createHash } from "node:crypto";
import { cp, mkdir, readdir, readFile, rm, stat, writeFile } from "node:fs/promises";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

const root = dirname(fileURLToPath(import.meta.url));
const src = join(root, "src");
const dist = join(root, "dist");
const vendor = join(dist, "vendor");

// What the page loads (chart) and what its accessibility tests inject (axe). The page's library is
// vendored under a name with its version (`vendor/chart-4.6.1.umd.min.js`), and index.html's
// reference to `vendor/chart.umd.min.js` is rewritten to it: the server can then let browsers keep
// vendor/ for a year, and an upgrade is a new name.
const VENDORED = [
  ["chart.js/dist/chart.umd.min.js", "chart.umd.min.js", "chart.js"],
  ["chart.js/LICENSE.md", "chart.js.LICENSE.md"],
  // The receipt's PDF (web/src/receipt.js), loaded only when a user asks for the PDF.
  ["jspdf/dist/jspdf.umd.min.js", "jspdf.umd.min.js", "jspdf"],
  ["jspdf/LICENSE", "jspdf.LICENSE"],
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

const renamed = new Map();
for (const [from, to, pkg] of VENDORED) {
  const path = join(root, "node_modules", from);
  if (!(await exists(path))) {
    if (from.includes("LICENSE")) continue; // licence files are nice to have
    console.error(`missing ${path}: run \`npm ci\` in web/ first`);
    process.exit(1);
  }
  let name = to;
  if (pkg) {
    const { version } = JSON.parse(await readFile(join(root, "node_modules", pkg, "package.json"), "utf8"));
    name = to.replace(/^([^.]+)/, `$1-${version}`);
    renamed.set(`vendor/${to}`, `vendor/${name}`);
  }
  await cp(path, join(vendor, name));
}

// The page's own styles and modules get their content's hash in their name (`app.3f9c1a2b.js`), so
// the server lets browsers keep every file under page/ for a year (immutable) and only index.html is
// revalidated. A module's hash covers the hashed names of what it imports, so a change anywhere
// renames every module that leads to it. (The modules import each other without cycles.)
const hashed = new Map(); // "app.js" -> "app.<hash>.js"
const IMPORT = /(from\s+|import\s*\(\s*)"\.\/([\w-]+\.(?:js|mjs))"/g;
async function hashModule(name, trail = []) {
  if (hashed.has(name)) return hashed.get(name);
  if (trail.includes(name)) throw new Error(`import cycle: ${[...trail, name].join(" -> ")}`);
  let code = await readFile(join(dist, name), "utf8");
  for (const dep of new Set([...code.matchAll(IMPORT)].map((m) => m[2]))) await hashModule(dep, [...trail, name]);
  code = code.replace(IMPORT, (m, lead, dep) => `${lead}"./${hashed.get(dep)}"`);
  const out = withHash(name, code);
  await writeFile(join(dist, out), code);
  await rm(join(dist, name));
  hashed.set(name, out);
  return out;
}
function withHash(name, content) {
  const digest = createHash("sha256").update(content).digest("hex").slice(0, 10);
  return name.replace(/\.(\w+)$/, `.${digest}.$1`);
}
await hashModule("app.js");
for (const name of await readdir(dist)) {
  if (/^[\w-]+\.(js|mjs)$/.test(name) && !/\.[0-9a-f]{10}\./.test(name)) await rm(join(dist, name)); // not reached from app.js
}
const css = await readFile(join(dist, "styles.css"), "utf8");
const cssName = withHash("styles.css", css);
await writeFile(join(dist, cssName), css);
await rm(join(dist, "styles.css"));
renamed.set("page/styles.css", `page/${cssName}`);
renamed.set("page/app.js", `page/${hashed.get("app.js")}`);

const index = join(dist, "index.html");
let html = await readFile(index, "utf8");
for (const [from, to] of renamed) {
  if (!html.includes(from)) {
    console.error(`index.html does not reference ${from}`);
    process.exit(1);
  }
  html = html.replaceAll(from, to);
}
await writeFile(index, html);

// The help page (src/help.html, served at page/help.html and revalidated like index.html): the
// page's stylesheet under its hashed name.
const help = join(dist, "help.html");
await writeFile(help, (await readFile(help, "utf8")).replace('href="styles.css"', `href="${cssName}"`));

// Swagger UI (swagger-ui-dist, pinned in package.json) for the API's OpenAPI document, in
// dist/swagger/: the local runner serves it at /docs/ (tools/localsam/http_api.py, local only). Its
// page and initializer are written here; the initializer loads GET /v1/openapi.json (same origin).
const swagger = join(dist, "swagger");
const SWAGGER_FILES = [
  "swagger-ui.css", "swagger-ui-bundle.js", "swagger-ui-standalone-preset.js", "favicon-32x32.png",
  "favicon-16x16.png", "LICENSE", "NOTICE",
];
await mkdir(swagger, { recursive: true });
for (const name of SWAGGER_FILES) {
  const path = join(root, "node_modules", "swagger-ui-dist", name);
  if (!(await exists(path))) {
    if (name === "LICENSE" || name === "NOTICE") continue;
    console.error(`missing ${path}: run \`npm ci\` in web/ first`);
    process.exit(1);
  }
  await cp(path, join(swagger, name));
}
await writeFile(join(swagger, "index.html"), `<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Credit billing API (local)</title>
  <link rel="stylesheet" href="./swagger-ui.css">
  <link rel="icon" type="image/png" href="./favicon-32x32.png" sizes="32x32">
  <link rel="icon" type="image/png" href="./favicon-16x16.png" sizes="16x16">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="./swagger-ui-bundle.js"></script>
  <script src="./swagger-ui-standalone-preset.js"></script>
  <script src="./swagger-initializer.js"></script>
</body>
</html>
`);
await writeFile(join(swagger, "swagger-initializer.js"), `// The API's own document, from the same origin.
window.onload = () => {
  window.ui = SwaggerUIBundle({
    url: "/v1/openapi.json",
    dom_id: "#swagger-ui",
    deepLinking: true,
    presets: [SwaggerUIBundle.presets.apis, SwaggerUIStandalonePreset],
    plugins: [SwaggerUIBundle.plugins.DownloadUrl],
    layout: "StandaloneLayout",
  });
};
`);

console.log(`built ${dist}`);

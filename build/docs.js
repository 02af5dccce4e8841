// Rewrites the option reference in README.md (between the config-table markers) from
// shared/config/schema.ts, and the kong / nginx option tables (between their markers) from
// plugins/kong/options.ts and plugins/nginx/generator/options.ts, so the docs always match what
// the validators accept.
//
//   node build/docs.js           rewrite README.md (creates a minimal one when missing)
//   node build/docs.js --check   exit 1 when README.md is out of date
//
// Self-sufficient: esbuild bundles shared/config/docs.ts in memory and the bundle is imported from a
// data: URL, so no TypeScript loader and no temp files are needed.

import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import path from 'node:path';
import { build } from 'esbuild';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const readmePath = path.join(root, 'README.md');
const START = '<!-- config-table:start -->';
const END = '<!-- config-table:end -->';
// The Kong plugin's own `kong` record (plugins/kong/options.ts), in the Kong section.
const KONG_START = '<!-- kong-options:start -->';
const KONG_END = '<!-- kong-options:end -->';
// The NGINX generator's `nginx:` section (plugins/nginx/generator/options.ts), in the NGINX section.
const NGINX_START = '<!-- nginx-options:start -->';
const NGINX_END = '<!-- nginx-options:end -->';

async function loadDocs() {
  const result = await build({
    stdin: {
      contents: "export { configSection, configTable } from './shared/config/docs';\nexport { kongOptionsSchema } from './plugins/kong/options';\nexport { nginxSectionSchema } from './plugins/nginx/generator/options';\n",
      resolveDir: root,
      loader: 'ts',
    },
    bundle: true,
    format: 'esm',
    platform: 'neutral',
    target: 'es2017',
    write: false,
    logLevel: 'silent',
  });
  const source = result.outputFiles[0].text;
  return import('data:text/javascript;base64,' + Buffer.from(source).toString('base64'));
}

async function readReadme() {
  try {
    return await readFile(readmePath, 'utf8');
  } catch (error) {
    if (error.code === 'ENOENT') return null;
    throw error;
  }
}

/** `text` with the section between the markers replaced; throws when the markers are broken. */
function replaceSection(text, startMarker, endMarker, section) {
  const block = startMarker + '\n' + section.trimEnd() + '\n' + endMarker;
  const start = text.indexOf(startMarker);
  const end = text.indexOf(endMarker);
  if (start < 0 || end < 0 || end < start) {
    throw new Error(`README.md must contain ${startMarker} followed by ${endMarker}`);
  }
  return text.slice(0, start) + block + text.slice(end + endMarker.length);
}

/** The README with both generated sections replaced. */
function render(readme, docs) {
  if (readme === null) return START + '\n' + docs.configSection().trimEnd() + '\n' + END + '\n';
  const withConfig = replaceSection(readme, START, END, docs.configSection());
  const withKong = replaceSection(withConfig, KONG_START, KONG_END, docs.configTable(docs.kongOptionsSchema));
  return replaceSection(withKong, NGINX_START, NGINX_END, docs.configTable(docs.nginxSectionSchema));
}

async function main() {
  const check = process.argv.includes('--check');
  const docs = await loadDocs();
  const readme = await readReadme();
  const wanted = render(readme, docs);
  if (check) {
    if (readme !== wanted) {
      const what = readme === null ? 'README.md is missing' : 'README.md option tables are out of date with shared/config/schema.ts / plugins/kong/options.ts / plugins/nginx/generator/options.ts';
      console.error(what + '; run: npm run docs');
      process.exit(1);
    }
    console.log('README.md config table is up to date');
    return;
  }
  if (readme === wanted) {
    console.log('README.md config table already up to date');
    return;
  }
  await writeFile(readmePath, wanted);
  console.log(readme === null ? 'created README.md with the config table' : 'updated the config table in README.md');
}

main().catch((error) => {
  console.error(error instanceof Error ? error.message : error);
  process.exit(2);
});

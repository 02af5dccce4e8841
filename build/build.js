#!/usr/bin/env node
// esbuild builds of the two gateway plugins.
//
//   plugins/kong/index.ts  → dist/kong/llm-balancer.js   one CommonJS file for kong-js-pluginserver
//   plugins/nginx/index.ts → dist/nginx/llm_balancer.js  one ES module for njs 0.8.9 (`js_import`)
//
// Usage: node build/build.js                       build both
//        node build/build.js --njs ENTRY OUTFILE    bundle another njs entry (e.g. a benchmark's)
//        import { build, buildKongBundle, buildNjsBundle } from './build/build.js'
import fs from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import * as esbuild from 'esbuild';

export const REPO_ROOT = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
export const KONG_ENTRY = path.join(REPO_ROOT, 'plugins', 'kong', 'index.ts');
export const KONG_OUTFILE = path.join(REPO_ROOT, 'dist', 'kong', 'llm-balancer.js');
export const NGINX_ENTRY = path.join(REPO_ROOT, 'plugins', 'nginx', 'index.ts');
export const NGINX_OUTFILE = path.join(REPO_ROOT, 'dist', 'nginx', 'llm_balancer.js');

// What kong-js-pluginserver reads from the module (kong-pdk lib/mod.js): `new Plugin(config)`,
// Schema (the config record's field list), Version, Priority; Name is optional (else the file name).
const KONG_REQUIRED_EXPORTS = ['Plugin', 'Schema', 'Version', 'Priority'];

// njs 0.8.9 (default engine) loads `export default` only: named exports fail at load. es2017 keeps
// async/await native (es2016 would lower it to generators, which njs rejects) and lowers `?.`,
// `??`, `??=` and `catch {}`. Object spread is lowered to a helper that uses for-of (rejected),
// `class`, for-of, destructuring and default parameters are kept as they are: eslint.config.js
// forbids them in shared/ and plugins/nginx/, and spec/njs-bundle.spec.ts loads the real bundle.
export const NJS_BUILD_OPTIONS = Object.freeze({
  bundle: true,
  // njs's built-in module (plugins/nginx/index.ts: native MD5 for prompt blocks), not bundled.
  external: ['crypto'],
  format: 'esm',
  platform: 'neutral',
  target: 'es2017',
  charset: 'utf8',
  legalComments: 'none',
});

export class BuildError extends Error {}

function requireEntry(entry, what) {
  if (!fs.existsSync(entry)) {
    throw new BuildError(`${what} entry ${path.relative(REPO_ROOT, entry)} does not exist`);
  }
}

function formatMessages(messages) {
  return messages
    .map((m) => {
      const loc = m.location ? `${m.location.file}:${m.location.line}:${m.location.column}: ` : '';
      return `${loc}${m.text}`;
    })
    .join('\n');
}

async function runEsbuild(options) {
  try {
    const result = await esbuild.build(Object.assign({ metafile: true, logLevel: 'silent', write: true }, options));
    if (result.warnings.length) {
      process.stderr.write(`build: warnings in ${path.relative(REPO_ROOT, options.outfile)}:\n${formatMessages(result.warnings)}\n`);
    }
    return result;
  } catch (e) {
    if (e && Array.isArray(e.errors)) {
      throw new BuildError(`esbuild failed for ${path.relative(REPO_ROOT, options.entryPoints[0])}:\n${formatMessages(e.errors)}`);
    }
    throw e;
  }
}

function outputInfo(result, outfile) {
  const key = Object.keys(result.metafile.outputs).find((k) => path.resolve(REPO_ROOT, k) === path.resolve(outfile)) ??
    Object.keys(result.metafile.outputs).find((k) => path.resolve(k) === path.resolve(outfile));
  const out = key ? result.metafile.outputs[key] : null;
  return { outfile, bytes: fs.statSync(outfile).size, exports: out ? out.exports : [] };
}

function outputExports(result) {
  const outs = Object.values(result.metafile.outputs).filter((o) => o.entryPoint);
  return outs.length ? outs[0].exports : [];
}

/** Bundle the Kong plugin entry into one CommonJS file that needs only Node. */
export async function buildKongBundle(entry = KONG_ENTRY, outfile = KONG_OUTFILE) {
  requireEntry(entry, 'Kong plugin');
  const options = {
    absWorkingDir: REPO_ROOT,
    entryPoints: [entry],
    outfile,
    bundle: true,
    format: 'cjs',
    platform: 'node',
    target: 'node20',
    legalComments: 'none',
  };
  // esbuild's metafile lists exports only for ESM outputs: an in-memory ESM build of the same
  // entry tells which names module.exports will carry, without running the plugin's code.
  const [result, probe] = await Promise.all([
    runEsbuild(options),
    runEsbuild(Object.assign({}, options, { format: 'esm', write: false })),
  ]);
  // The repository's package.json says "type": "module", so Node would load a .js file under
  // dist/ as ESM and kong-js-pluginserver's require() would fail (ERR_REQUIRE_ESM). This marker
  // makes the folder CommonJS; the plugin server skips .json files when it loads plugins.
  fs.writeFileSync(path.join(path.dirname(outfile), 'package.json'), '{ "type": "commonjs" }\n');
  const info = Object.assign(outputInfo(result, outfile), { exports: outputExports(probe) });
  const missing = KONG_REQUIRED_EXPORTS.filter((n) => !info.exports.includes(n));
  if (missing.length) {
    fs.rmSync(outfile, { force: true });
    throw new BuildError(
      `${path.relative(REPO_ROOT, entry)} must have the named exports ${KONG_REQUIRED_EXPORTS.join(', ')} ` +
        `(kong-js-pluginserver reads module.exports.Plugin etc.); missing: ${missing.join(', ')}`,
    );
  }
  return info;
}

/** The cold part of the njs module: handlers no request calls (plugins/nginx/cold.ts). */
export const NGINX_COLD_ENTRY = path.join(REPO_ROOT, 'plugins', 'nginx', 'cold.ts');

/**
 * The cold entry bundled on its own (an IIFE without exports: esbuild's export helper uses
 * for-of, which njs 0.8.9 rejects) inside the function `llmBalancerCold()`, cached per VM or
 * QuickJS context, as the text appended to the module. Its entry hands its handlers over by
 * calling `llmBalancerColdHandOver()`, a local function of that one. Under the njs engine
 * every request's VM instantiates the module's top level again; code inside a function nobody
 * calls is compiled once and never instantiated (plugins/nginx/index.ts).
 */
async function coldPart(coldEntry) {
  requireEntry(coldEntry, 'njs cold part');
  const options = Object.assign({}, NJS_BUILD_OPTIONS, { format: 'iife' });
  const result = await runEsbuild(Object.assign({ absWorkingDir: REPO_ROOT, entryPoints: [coldEntry], outfile: path.join(REPO_ROOT, 'dist', 'cold.js'), write: false }, options));
  const code = result.outputFiles[0].text;
  return [
    '',
    '// The cold handlers (plugins/nginx/cold.ts), built on their own and instantiated on first use.',
    'var llmBalancerColdCache = null;',
    'function llmBalancerCold() {',
    '  if (llmBalancerColdCache === null) {',
    '    llmBalancerColdCache = (function () {',
    '      var llmBalancerColdHandlers = null;',
    '      function llmBalancerColdHandOver(handlers) {',
    '        llmBalancerColdHandlers = handlers;',
    '      }',
    code.trimEnd(),
    '      return llmBalancerColdHandlers;',
    '    })();',
    '  }',
    '  return llmBalancerColdCache;',
    '}',
    '',
  ].join('\n');
}

/**
 * Bundle an entry into one ES module that njs 0.8.9 can `js_import`; its only export must be
 * default. `coldEntry` (the NGINX module's cold.ts by default) is appended as coldPart says.
 */
export async function buildNjsBundle(entry = NGINX_ENTRY, outfile = NGINX_OUTFILE, coldEntry = entry === NGINX_ENTRY ? NGINX_COLD_ENTRY : null) {
  requireEntry(entry, 'njs');
  const footer = coldEntry === null ? {} : { footer: { js: await coldPart(coldEntry) } };
  const result = await runEsbuild(Object.assign({ absWorkingDir: REPO_ROOT, entryPoints: [entry], outfile }, NJS_BUILD_OPTIONS, footer));
  const info = outputInfo(result, outfile);
  const named = info.exports.filter((n) => n !== 'default');
  if (!info.exports.includes('default') || named.length) {
    fs.rmSync(outfile, { force: true });
    throw new BuildError(
      `${path.relative(REPO_ROOT, entry)}: njs loads only \`export default {...}\`; ` +
        `found exports [${info.exports.join(', ')}]. Export one default object and nothing else.`,
    );
  }
  return info;
}

export const CLI_ENTRY = path.join(REPO_ROOT, 'plugins', 'nginx', 'generator', 'cli-entry.ts');
export const CLI_OUTFILE = path.join(REPO_ROOT, 'dist', 'cli', 'llm-balancer.js');

/**
 * Bundle TypeScript for Node into one ES module: `source` is an entry file, or `{ contents }` of
 * an entry written in place (resolved from the repository root). Used for the CLI and by the
 * benchmarks, which import the core and the generator.
 */
export async function buildNodeModule(source, outfile) {
  const input =
    typeof source === 'string' ? { entryPoints: [source] } : { stdin: { contents: source.contents, resolveDir: REPO_ROOT, loader: 'ts' } };
  const result = await runEsbuild(
    Object.assign(input, {
      absWorkingDir: REPO_ROOT,
      outfile,
      bundle: true,
      format: 'esm',
      platform: 'node',
      target: 'node20',
      legalComments: 'none',
      // Bundled CommonJS dependencies (yaml) call require('process'): give the ES module a require.
      banner: { js: "import { createRequire as __createRequire } from 'node:module'; const require = __createRequire(import.meta.url);" },
    }),
  );
  return outputInfo(result, outfile);
}

/** Bundle the `llm-balancer` command (nginx-config generator) into one Node ES module. */
export async function buildCliBundle(entry = CLI_ENTRY, outfile = CLI_OUTFILE) {
  requireEntry(entry, 'CLI');
  return buildNodeModule(entry, outfile);
}

/** Build both plugins and the CLI. Returns [{outfile, bytes, exports}]. */
export async function build() {
  const missing = [KONG_ENTRY, NGINX_ENTRY, CLI_ENTRY].filter((e) => !fs.existsSync(e));
  if (missing.length) {
    throw new BuildError(`missing entry file(s): ${missing.map((e) => path.relative(REPO_ROOT, e)).join(', ')}`);
  }
  return Promise.all([buildKongBundle(), buildNjsBundle(), buildCliBundle()]);
}

function report(infos, started) {
  for (const i of infos) {
    process.stdout.write(`build: ${path.relative(REPO_ROOT, i.outfile)}  ${(i.bytes / 1024).toFixed(1)} KiB\n`);
  }
  process.stdout.write(`build: done in ${Date.now() - started} ms\n`);
}

const isMain = process.argv[1] && path.resolve(process.argv[1]) === fileURLToPath(import.meta.url);
if (isMain) {
  const started = Date.now();
  const args = process.argv.slice(2);
  let job;
  if (args[0] === '--njs') {
    if (args.length !== 3) {
      process.stderr.write('usage: node build/build.js --njs ENTRY OUTFILE\n');
      process.exit(2);
    }
    job = buildNjsBundle(path.resolve(args[1]), path.resolve(args[2])).then((i) => [i]);
  } else if (args.length) {
    process.stderr.write('usage: node build/build.js [--njs ENTRY OUTFILE]\n');
    process.exit(2);
  } else {
    job = build();
  }
  job
    .then((infos) => report(infos, started))
    .catch((e) => {
      process.stderr.write(`build: FAILED: ${e instanceof BuildError ? e.message : e.stack}\n`);
      process.exitCode = 1;
    });
}

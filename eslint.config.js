// ESLint flat config.
//
// Everything: typescript-eslint's type-unaware recommended rules plus a few core rules.
// shared/** and plugins/nginx/**: the "njs subset": what njs 0.8.9 (nginx's default JS engine)
//   cannot load or does not have at run time, measured with the real njs (see
//   shared/GATEWAY-FACTS.md). esbuild's es2017 target would lower a few of these (`?.`, `??=`,
//   `catch {}`) but we keep the source close to what runs, and spec/njs-bundle.spec.ts loads the
//   real bundle in the real njs as the final word.
// shared/** also: the core is pure: no clock, no randomness, no gateway or host globals, and no
//   imports from outside shared/. Clock and random sources are injected.
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { defineConfig, globalIgnores } from 'eslint/config';
import tseslint from 'typescript-eslint';

const REPO_ROOT = path.dirname(fileURLToPath(import.meta.url));
const SHARED_DIR = path.join(REPO_ROOT, 'shared');

const NJS = 'njs 0.8.9';

const njsSyntax = [
  { selector: 'ClassDeclaration, ClassExpression', message: `${NJS} cannot load \`class\`: write a factory function that returns a plain object.` },
  { selector: 'ForOfStatement', message: `${NJS} cannot load for...of: use an index loop (for (let i = 0; i < a.length; i++)).` },
  { selector: 'SpreadElement', message: `${NJS} cannot load spread (...x in arrays, calls or objects): use concat/slice, fn.apply, or Object.assign.` },
  { selector: 'ObjectPattern, ArrayPattern', message: `${NJS} cannot load destructuring: read the properties one by one (const a = o.a).` },
  { selector: 'AssignmentPattern', message: `${NJS} cannot load default parameters or destructuring defaults: check for undefined in the body.` },
  { selector: 'ChainExpression', message: `${NJS} cannot load optional chaining (?.): test for null/undefined explicitly.` },
  { selector: ':function[generator=true], YieldExpression', message: `${NJS} cannot load generators: return arrays or use index loops.` },
  { selector: 'CatchClause[param=null]', message: `${NJS} cannot load \`catch {}\` without a binding: write catch (e).` },
  { selector: 'AssignmentExpression[operator=/^(\\?\\?|\\|\\||&&)=$/]', message: `${NJS} cannot load logical assignment (??=, ||=, &&=): write a = a ?? b.` },
  { selector: 'Literal[bigint]', message: `${NJS} has no BigInt: use numbers (or two 32-bit halves).` },
  { selector: 'MetaProperty', message: `${NJS} cannot load new.target / import.meta.` },
  { selector: 'ImportExpression', message: `${NJS} cannot load dynamic import(): use a static import.` },
  { selector: 'TaggedTemplateExpression', message: `${NJS} tagged templates are broken (no strings.raw): call a function instead.` },
  { selector: 'Literal[regex.flags=/[suvd]/]', message: `${NJS} regular expressions do not support the s, u, v or d flags.` },
  {
    selector: 'CallExpression[callee.type="MemberExpression"][callee.property.name=/^(at|flat|flatMap|findLast|findLastIndex|matchAll|localeCompare|normalize|toLocaleString|toLocaleLowerCase|toLocaleUpperCase)$/]',
    message: `${NJS} lacks this method (Array/String .at, .flat, .flatMap, .findLast(Index), .matchAll, .localeCompare, .normalize, .toLocale*): index with [i], loop, or compare with < >.`,
  },
];

const njsGlobals = ['Map', 'Set', 'WeakMap', 'WeakSet', 'WeakRef', 'FinalizationRegistry'].map((name) => ({
  name,
  message: `${NJS} has no ${name}: use a plain record (Object.create(null)) keyed by string, or an array.`,
})).concat(
  ['Proxy', 'Reflect', 'BigInt', 'Intl', 'structuredClone', 'queueMicrotask', 'SharedArrayBuffer', 'Atomics', 'BigInt64Array', 'BigUint64Array'].map((name) => ({
    name,
    message: `${NJS} has no ${name}.`,
  })),
);

const njsProperties = [
  { object: 'Object', property: 'fromEntries', message: `${NJS} has no Object.fromEntries: build the record in a loop.` },
  { object: 'Object', property: 'hasOwn', message: `${NJS} has no Object.hasOwn: use Object.prototype.hasOwnProperty.call(o, k) (or records from Object.create(null) and \`in\`).` },
  { object: 'Object', property: 'groupBy', message: `${NJS} has no Object.groupBy.` },
  { object: 'Array', property: 'fromAsync', message: `${NJS} has no Array.fromAsync.` },
  { object: 'String', property: 'raw', message: `${NJS} has no String.raw.` },
];

const PURE = 'shared/ is the pure core';

const pureSyntax = [
  { selector: 'NewExpression[callee.name="Date"][arguments.length=0]', message: `${PURE}: \`new Date()\` reads the clock; take \`now\` from the injected clock.` },
  { selector: 'CallExpression[callee.name="Date"]', message: `${PURE}: Date() reads the clock; take \`now\` from the injected clock.` },
  {
    selector: 'VariableDeclaration[declare=true], TSDeclareFunction[declare=true], TSModuleDeclaration[declare=true]',
    message: `${PURE}: no ambient \`declare\` (it would reach a host global past these rules); take what you need as a parameter.`,
  },
];

const pureGlobals = [
  ['process', 'read configuration in the adapter and pass it in'],
  ['ngx', 'gateway APIs belong in plugins/nginx'],
  ['kong', 'gateway APIs belong in plugins/kong'],
  ['console', 'return diagnostics as data; the adapter logs'],
  ['performance', 'take time from the injected clock'],
  ['crypto', 'take randomness from the injected random source'],
  ['setTimeout', 'the core is synchronous; adapters schedule'],
  ['setInterval', 'the core is synchronous; adapters schedule'],
  ['setImmediate', 'the core is synchronous; adapters schedule'],
  ['clearTimeout', 'the core is synchronous; adapters schedule'],
  ['clearInterval', 'the core is synchronous; adapters schedule'],
  ['fetch', 'the core does no I/O; adapters fetch'],
  ['require', 'use static imports inside shared/'],
  ['globalThis', 'do not reach into the host through the global object'],
].map(([name, why]) => ({ name, message: `${PURE}: no \`${name}\` here (${why}).` }));

const pureProperties = [
  { object: 'Date', property: 'now', message: `${PURE}: Date.now() reads the clock; take \`now\` from the injected clock.` },
  { object: 'Math', property: 'random', message: `${PURE}: Math.random() is not reproducible; use the injected random source.` },
];

// ----- local rules that selectors cannot express -----

function isFunction(node) {
  return node.type === 'FunctionDeclaration' || node.type === 'FunctionExpression' || node.type === 'ArrowFunctionExpression';
}

/** njs rejects `await` anywhere inside a call's callee/arguments or a template literal of the same function. */
const njsNoAwaitInArguments = {
  meta: {
    type: 'problem',
    docs: { description: 'njs 0.8.9 cannot load `await` inside call arguments, callees or template literals' },
    schema: [],
    messages: {
      inArguments: `${NJS} cannot load \`await\` inside a call or \`new\` (f(await x), (await x)()) or a template literal: assign it to a variable first (const v = await x; f(v)).`,
    },
  },
  create(context) {
    return {
      AwaitExpression(node) {
        let child = node;
        let parent = node.parent;
        while (parent && !isFunction(parent)) {
          const inCall = (parent.type === 'CallExpression' || parent.type === 'NewExpression') &&
            (parent.callee === child || parent.arguments.includes(child));
          if (inCall || parent.type === 'TemplateLiteral') {
            context.report({ node, messageId: 'inArguments' });
            return;
          }
          child = parent;
          parent = parent.parent;
        }
      },
    };
  },
};

/** Relative imports in shared/ must resolve inside shared/ (bare and node: imports: no-restricted-imports). */
const sharedImportsStayInside = {
  meta: {
    type: 'problem',
    docs: { description: 'shared/ may import only modules inside shared/' },
    schema: [],
    messages: {
      outside: `${PURE}: '{{source}}' resolves outside shared/; the core must not depend on adapters, build or spec code.`,
    },
  },
  create(context) {
    const filename = context.filename;
    function check(sourceNode) {
      if (!sourceNode || typeof sourceNode.value !== 'string') return;
      const source = sourceNode.value;
      if (!source.startsWith('.')) return;
      const target = path.resolve(path.dirname(filename), source);
      if (target !== SHARED_DIR && !target.startsWith(SHARED_DIR + path.sep)) {
        context.report({ node: sourceNode, messageId: 'outside', data: { source } });
      }
    }
    return {
      ImportDeclaration: (node) => check(node.source),
      ExportNamedDeclaration: (node) => check(node.source),
      ExportAllDeclaration: (node) => check(node.source),
      ImportExpression: (node) => check(node.source),
      TSImportType: (node) => check(node.argument && node.argument.literal),
    };
  },
};

const local = {
  meta: { name: 'llm-balancer-local' },
  rules: {
    'njs-no-await-in-arguments': njsNoAwaitInArguments,
    'shared-imports-stay-inside': sharedImportsStayInside,
  },
};

export default defineConfig(
  globalIgnores(['dist/', 'node_modules/', '.cache/', 'coverage/', 'bench/results/']),
  {
    files: ['**/*.{js,mjs,cjs,ts,mts,cts}'],
    languageOptions: { ecmaVersion: 'latest', sourceType: 'module' },
    linterOptions: { reportUnusedDisableDirectives: 'error' },
  },
  tseslint.configs.recommended,
  {
    files: ['**/*.{js,mjs,cjs,ts,mts,cts}'],
    rules: {
      'no-var': 'error',
      'prefer-const': 'error',
      eqeqeq: ['error', 'smart'],
      'no-debugger': 'error',
      'no-fallthrough': 'error',
      'no-self-compare': 'error',
      'no-unreachable': 'error',
      'no-constant-condition': ['error', { checkLoops: false }],
      '@typescript-eslint/no-unused-vars': [
        'error',
        { argsIgnorePattern: '^_', varsIgnorePattern: '^_', caughtErrors: 'none', ignoreRestSiblings: true },
      ],
      // Specs and adapters occasionally need `any` at gateway boundaries; flag it, don't fail.
      '@typescript-eslint/no-explicit-any': 'warn',
    },
  },
  {
    // Plain .js files here are Node ESM scripts (build/, bench/, testbed/, this file).
    files: ['**/*.{js,mjs}'],
    rules: { '@typescript-eslint/no-require-imports': 'off' },
  },
  {
    files: ['shared/**/*.ts', 'plugins/nginx/**/*.ts'],
    // The config generator and its CLI run in Node (npx llm-balancer nginx-config), never in njs.
    ignores: ['plugins/nginx/generator/**'],
    plugins: { local },
    rules: {
      'no-restricted-syntax': ['error', ...njsSyntax],
      'no-restricted-globals': ['error', ...njsGlobals],
      'no-restricted-properties': ['error', ...njsProperties],
      'local/njs-no-await-in-arguments': 'error',
    },
  },
  {
    // Rule options are replaced, not merged, by a later matching block: repeat the njs lists.
    files: ['shared/**/*.ts'],
    plugins: { local },
    rules: {
      'no-restricted-syntax': ['error', ...njsSyntax, ...pureSyntax],
      'no-restricted-globals': ['error', ...njsGlobals, ...pureGlobals],
      'no-restricted-properties': ['error', ...njsProperties, ...pureProperties],
      'no-restricted-imports': [
        'error',
        {
          patterns: [
            {
              regex: '^(?!\\.{1,2}(/|$))',
              message: `${PURE}: import only relative modules inside shared/ (no packages, no node:* builtins); the core runs in njs and Node alike.`,
            },
          ],
        },
      ],
      'local/shared-imports-stay-inside': 'error',
    },
  },
);

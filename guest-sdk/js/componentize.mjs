// Builds a JavaScript Switchyard policy into a component with componentize-js.
//
// Usage: node guest-sdk/js/componentize.mjs POLICY_DIR SOURCE WIT_DIR OUT.wasm
//
// componentize-js is resolved from POLICY_DIR's node_modules (installed from
// its package-lock.json), so each policy pins its own toolchain version. Run it
// from the repository root: componentize-js maps the working directory into
// the build, so relative imports of guest-sdk/js/ resolve.
import { writeFileSync } from 'node:fs';
import { readFile, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';

import { patchBindings } from './bindings-patch.mjs';

const [policyDir, source, witDir, out] = process.argv.slice(2);
if (!out) {
  console.error('usage: componentize.mjs POLICY_DIR SOURCE WIT_DIR OUT.wasm');
  process.exit(2);
}

// The package is ESM-only (its `exports` has no `require` entry), so resolve
// its entry point from its package.json by hand.
const packageDir = join(resolve(policyDir), 'node_modules/@bytecodealliance/componentize-js');
const manifest = JSON.parse(await readFile(join(packageDir, 'package.json'), 'utf8'));
const entry = join(packageDir, manifest.exports.import);
const { componentize } = await import(pathToFileURL(entry).href);

// Patch the generated glue before it is snapshotted (see bindings-patch.mjs):
// it roughly halves the cost of a warm `decide`. componentize() calls the
// splicer through this shared object, so wrapping its method is enough.
if (process.env.SWITCHYARD_JS_RAW_BINDINGS !== '1') {
  const splicerModule = join(packageDir, 'lib/spidermonkey-embedding-splicer.js');
  const { splicer } = await import(pathToFileURL(splicerModule).href);
  const spliceBindings = splicer.spliceBindings;
  splicer.spliceBindings = (...args) => {
    const spliced = spliceBindings(...args);
    spliced.jsBindings = patchBindings(spliced.jsBindings);
    if (process.env.SWITCHYARD_JS_BINDINGS_OUT) {
      writeFileSync(process.env.SWITCHYARD_JS_BINDINGS_OUT, spliced.jsBindings);
    }
    return spliced;
  };
}

// A policy needs none of these. With all five off the component imports no
// WASI at all: only the `switchyard:policy/host` interface.
const { component } = await componentize({
  sourcePath: resolve(source),
  witPath: resolve(witDir),
  worldName: 'policy',
  disableFeatures: ['stdio', 'random', 'clocks', 'http', 'fetch-event'],
});
await writeFile(out, component);

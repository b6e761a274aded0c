// Speeds up the JavaScript glue that ComponentizeJS 0.23.0 generates for the
// `policy` world, before it is snapshotted into the component.
//
// Why: SpiderMonkey runs inside the component as an interpreter (no JIT, no
// inline caches), and the glue that moves values across the component boundary
// is plain JavaScript run by it. Measured with `decide` for 8 candidates (see
// guest-sdk/docs/js.md, "Call cost"), most of a warm call was that glue, and
// most of the glue was two patterns:
//
// - Every read or write of guest memory is `dataView($memory).getX(...)`: a
//   function call plus two native getters (`dv.buffer`, and `$memory.buffer`,
//   which asks the allocator for the heap's end each time). Lifting one
//   candidate does 10 of them (~5,000 wasm instructions each). Here, a function
//   that only reads memory allocated before it started (an export's arguments,
//   an import's results) makes one DataView and reads through it. That is safe:
//   linear memory never moves, so a DataView made after the data was allocated
//   covers it even if memory grows later.
// - Every string handed to the host (the plan's `reason`, a header name) is
//   measured character by character in JavaScript before it is encoded. Here
//   `TextEncoder.encode` (native) measures and encodes it in one call. The
//   bytes are the same (both write U+FFFD for a lone surrogate).
//
// - A `u64` was read as `BigInt.asUintN(64, BigInt(dv.getBigInt64(at, true)))`,
//   three calls; where the read goes through the one DataView it becomes
//   `dv.getBigUint64(at, true)`, the same value in one call (3 per candidate).
//
// - Each export awaited the policy's result (`ret = await decide(...)`), so
//   even a plain synchronous `decide` paid for a promise and a trip through
//   the job queue on every call. Here the result is awaited only when it is a
//   promise (an `async` policy function still works, as before).
// - The `request` handle a `decide` call is given was registered with a
//   FinalizationRegistry on every call, and unregistered again in every method
//   call on it. A policy only ever borrows a request, for one call, and the
//   wrapper ends that borrow itself when the call returns, so a finalizer has
//   nothing left to drop: the registrations are removed.
//
// It also drops the `_debugLog(...)` calls (each built an object and looked up
// `globalThis.process`, which does not exist in the component).
//
// The patches match the generated text exactly. When ComponentizeJS changes
// its output (a version bump), `patchBindings` throws and names the pattern
// it did not find, so the build fails instead of silently shipping slower or
// wrong glue; update the patterns after checking the new output (build with
// SWITCHYARD_JS_BINDINGS_OUT=FILE to write the patched glue to FILE).
// SWITCHYARD_JS_RAW_BINDINGS=1 builds with the unpatched glue, for comparison.

/** The generated UTF-8 encoder's body after its empty-string check. */
const ENCODE_OLD = `  let len = 0;
  let codepoints = 0;
  for (let i = 0; i < s.length; i++) {
    const ch = s.charCodeAt(i);
    codepoints++;
    if (ch < 0x80) { len += 1; }
    else if (ch < 0x800) { len += 2; }
    else if (ch >= 0xd800 && ch <= 0xdbff &&
    i + 1 < s.length &&
    (s.charCodeAt(i + 1) & 0xfc00) === 0xdc00) {
      len += 4;
      i++;
    } else { len += 3; }
  }
  const ptr = realloc(0, 0, 1, len);
  const { read, written } = TEXT_ENCODER_UTF8.encodeInto(
  s,
  new Uint8Array(memory.buffer, ptr, len),
  );
  if (read !== s.length || written !== len) {
    throw new Error('failed to encode whole string');
  }
  const res = { ptr, len, codepoints };
  return res;`;

// `codepoints` is read nowhere else in the glue (checked below).
const ENCODE_NEW = `  const bytes = TEXT_ENCODER_UTF8.encode(s);
  const len = bytes.length;
  const ptr = realloc(0, 0, 1, len);
  new Uint8Array(memory.buffer, ptr, len).set(bytes);
  return { ptr, len };`;

const READ = 'dataView($memory)';

/** An unsigned 64-bit read through one of the DataViews made here. */
const U64_READ = /BigInt\.asUintN\(64, BigInt\((__dv\w*)\.getBigInt64\(([^()]*), true\)\)\)/g;

/** The glue's debug-log calls: `_debugLog(...);`, arguments nested one level deep at most. */
const DEBUG_LOG_CALL = /_debugLog\((?:[^()]|\([^()]*\))*\);/g;

/** The line of an import wrapper that calls the host and gets its result pointer. */
const IMPORT_CALL = /^([ \t]*)ret = \$import_[\w$]+\(.*\);$/;

/** The first line of an export wrapper. */
const EXPORT_START = /^async function export_[\w$]+\(.*\) \{$/;

/** Replaces `text`'s reads of guest memory with `name`, returning the new text and the count. */
function readThrough(text, name) {
  const count = text.split(READ).length - 1;
  return { text: text.replaceAll(READ, name), count };
}

/**
 * Import wrappers: after `ret = $import_...(...)`, every read up to
 * `$dealloc(ret)` is of memory the host call filled in, so one DataView, made
 * right after the call, serves them all.
 */
function patchImports(lines) {
  let wrappers = 0;
  for (let i = 0; i < lines.length; i++) {
    const call = IMPORT_CALL.exec(lines[i]);
    if (!call) {
      continue;
    }
    let end = i + 1;
    while (end < lines.length && !lines[end].includes('$dealloc(ret);')) {
      if (IMPORT_CALL.test(lines[end]) || EXPORT_START.test(lines[end])) {
        end = -1;
        break;
      }
      end++;
    }
    if (end < 0 || end === lines.length) {
      continue; // a result passed in registers: nothing is read from memory
    }
    let count = 0;
    for (let j = i + 1; j < end; j++) {
      const patched = readThrough(lines[j], '__dv');
      lines[j] = patched.text;
      count += patched.count;
    }
    if (count > 0) {
      lines.splice(i + 1, 0, `${call[1]}const __dv = ${READ};`);
      wrappers++;
    }
  }
  return wrappers;
}

/**
 * Export wrappers: everything before the line that calls the policy
 * (`ret = await ...`) lifts the arguments, reading memory the host filled in
 * before the call, and allocates none: one DataView, made at the start, serves.
 * The lowering after the call allocates, so it is left as it is.
 */
function patchExports(lines) {
  let wrappers = 0;
  for (let i = 0; i < lines.length; i++) {
    if (!EXPORT_START.test(lines[i])) {
      continue;
    }
    let end = i + 1;
    while (end < lines.length && !lines[end].includes('await ')) {
      end++;
    }
    if (end === lines.length) {
      throw new Error(`bindings patch: no \`await\` after \`${lines[i]}\``);
    }
    let count = 0;
    for (let j = i + 1; j < end; j++) {
      const patched = readThrough(lines[j], '__dvIn');
      lines[j] = patched.text;
      count += patched.count;
    }
    awaitOnlyPromises(lines, end);
    if (count > 0) {
      lines.splice(i + 1, 0, `  const __dvIn = ${READ};`);
      wrappers++;
    }
  }
  return wrappers;
}

/** An export wrapper's call of the policy: `ret = await name(`, with its indent. */
const EXPORT_CALL = /^([ \t]*)ret = await ([\w$]+\()/;

/**
 * Rewrites the export wrapper's `ret = await f(...);` at `lines[at]` (the
 * arguments may span lines) so that it awaits only a promise: a synchronous
 * policy's decision is used as it is returned.
 */
function awaitOnlyPromises(lines, at) {
  const call = EXPORT_CALL.exec(lines[at]);
  if (!call) {
    throw new Error(`bindings patch: unexpected export call \`${lines[at].trim()}\``);
  }
  const indent = call[1];
  lines[at] = lines[at].replace(EXPORT_CALL, `${indent}ret = ${call[2]}`);
  let end = at;
  // The statement ends on its first line (`f(a, b);`) or on a line at its
  // indent that closes it (`});` after an object argument).
  while (!lines[end].endsWith(');') || (end > at && lines[end] !== `${indent}});`)) {
    end++;
    if (end === lines.length || end > at + 64) {
      throw new Error(`bindings patch: no end for \`${lines[at].trim()}\``);
    }
  }
  lines.splice(end + 1, 0, `${indent}if (typeof ret?.then === 'function') ret = await ret;`);
}

/** The registry calls for the borrowed `request` handle (whole lines). */
const REQUEST_FINALIZATION = /^[ \t]*finalizationRegistry_[\w$]*\$request\.(register|unregister)\(.*\);\n/gm;

/** The patched glue. Throws when the generated text does not have the expected shape. */
export function patchBindings(source) {
  const fail = (what) => {
    throw new Error(
      `bindings patch (guest-sdk/js/bindings-patch.mjs): ${what}. ComponentizeJS's ` +
        'generated glue changed shape: check it and update the patterns, or build ' +
        'with SWITCHYARD_JS_RAW_BINDINGS=1',
    );
  };
  if (source.split(ENCODE_OLD).length !== 2) {
    fail('the UTF-8 encoder `_utf8AllocateAndEncode` was not found exactly once');
  }
  let out = source.replace(ENCODE_OLD, ENCODE_NEW);
  if (out.includes('codepoints')) {
    fail('`codepoints` is used outside the UTF-8 encoder');
  }

  const before = out.split('_debugLog(').length - 1;
  out = out.replace(DEBUG_LOG_CALL, '');
  // What is left is the definition, `const _debugLog = (...args) => {`.
  if (before < 2 || out.split('_debugLog(').length - 1 !== 0) {
    fail('`_debugLog(...)` calls are not of the expected form');
  }

  const registrations = out.match(REQUEST_FINALIZATION) ?? [];
  const registers = registrations.filter((line) => line.includes('.register(')).length;
  if (registers !== 1 || registrations.length < 2) {
    fail(`expected 1 FinalizationRegistry registration of the request handle, found ${registers}`);
  }
  out = out.replace(REQUEST_FINALIZATION, '');

  const lines = out.split('\n');
  const imports = patchImports(lines);
  const exports = patchExports(lines);
  if (imports === 0 || exports === 0) {
    fail(`found ${imports} import and ${exports} export wrappers reading guest memory`);
  }
  return lines.join('\n').replace(U64_READ, '$1.getBigUint64($2, true)');
}

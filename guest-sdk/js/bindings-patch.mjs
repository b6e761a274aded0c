// Speeds up the JavaScript glue that ComponentizeJS 0.23.0 generates for the
// `policy` world, before it is snapshotted into the component.
//
// Why: SpiderMonkey runs inside the component as an interpreter (no JIT, no
// inline caches), and the glue that moves values across the component boundary
// is plain JavaScript run by it. Measured with `decide` for 8 candidates (see
// guest-sdk/docs/js.md, "Call cost"), most of a warm call was that glue, and
// most of the glue was the patterns below:
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
// - Each export was an `async function` that awaited the policy's result
//   (`ret = await decide(...)`), so even a plain synchronous `decide` paid for
//   a generator, a promise and a trip through the job queue on every call.
//   Here the export is a plain function: a synchronous result is lowered at
//   once, and the export returns one promise, settled once at start-up (the
//   embedding only needs a fulfilled promise back). A promise result, from an
//   `async` policy function, goes to an async continuation that awaits it,
//   then ends the borrows and lowers it, as before (tests/fixtures/js/
//   compliance-async.js checks that path). Writes to the return area, and
//   reads of a parameter block, go through the DataView made when the export
//   starts (that memory was allocated before the call), and the borrows are
//   ended by an indexed loop rather than `for...of` (an iterator per call).
// - The glue is wrapped in a function. At the top level of the initializer
//   script each reference to its own declarations (`$memory`, `dataView`,
//   `symbolRscHandle`, the import functions) was a global lookup by name on
//   every use; in a function scope they are slots the bytecode addresses
//   directly. `bindExports` and the exports are put on the global, where the
//   embedding finds them.
// - Each method of the `request` resource defined a `helper` closure and
//   called it; the body is inlined into the method. And a lifted handle was
//   attached with `Object.defineProperty` (a descriptor object per call); it
//   is now a plain assignment (the property is enumerable, which nothing
//   observes: its key is a symbol only the glue holds).
// - The `request` handle a `decide` call is given was registered with a
//   FinalizationRegistry on every call, and unregistered again in every method
//   call on it. A policy only ever borrows a request, for one call, and the
//   wrapper ends that borrow itself when the call returns, so a finalizer has
//   nothing left to drop: the registrations are removed.
//
// It also drops the `_debugLog(...)` calls (each built an object and looked up
// `globalThis.process`, which does not exist in the component).
//
// One patch is not about speed: each export wrapper (and its async
// continuation) runs in `try { ... } catch`, which logs what it caught through
// the host's `log` import at `error` level, as `Uncaught <String(e)> (at <first
// stack frame>)`, then rethrows it. Without stdio, ComponentizeJS has nowhere
// to print an uncaught error and the instance traps with only "`unreachable`
// instruction executed"; the gateway keeps a call's error lines for its trap
// report, so the report now names the error (see `reportThrow`). A `try` costs
// nothing until something is thrown.
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
 * The lowering after the call allocates, so it keeps its own reads. Then each
 * wrapper is made synchronous (`syncExport`).
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
    if (count > 0) {
      lines.splice(i + 1, 0, `  const __dvIn = ${READ};`);
      end++;
      wrappers++;
    }
    i += syncExport(lines, i, end) - 1;
  }
  return wrappers;
}

/** An export wrapper's call of the policy: `ret = await name(`, with its indent. */
const EXPORT_CALL = /^([ \t]*)ret = await ([\w$]+\()/;

/** An export wrapper's first line, with its name and parameters. */
const EXPORT_HEADER = /^async function (export_[\w$]+)\((.*)\) \{$/;

/** The line that takes the borrows made while lifting: `const borrowsN = curResourceBorrows;`. */
const TAKE_BORROWS = /^ {2}const (borrows\d+) = curResourceBorrows;$/;

/** A read or write of guest memory at a parameter plus an offset: `dataView($memory).setInt8(arg3 + `. */
const ARG_ACCESS = /dataView\(\$memory\)\.((?:get|set)\w+)\((arg\d+) \+ /g;

/** The loop that ends the borrows: `for (const entry of borrowsN) {`, with its indent. */
const BORROWS_LOOP = /^([ \t]*)for \(const entry of (borrows\d+)\) \{$/;

/**
 * Rewrites the export wrapper that starts at `lines[start]` and calls the
 * policy at `lines[at]` (`ret = await f(...);`, the arguments may span lines)
 * into a plain function. A synchronous policy's result is lowered at once and
 * the wrapper returns the one settled promise `__DONE`; only a promise result
 * goes through `export_*$settle`, an async function that awaits it, then ends
 * the borrows (still held while the policy runs) and lowers the result, as the
 * generated wrapper did. Returns the number of lines the wrapper now spans.
 */
function syncExport(lines, start, at) {
  const header = EXPORT_HEADER.exec(lines[start]);
  const call = EXPORT_CALL.exec(lines[at]);
  if (!header || !call) {
    throw new Error(`bindings patch: unexpected export wrapper \`${lines[start]}\``);
  }
  const [, name, params] = header;
  const indent = call[1];
  lines[at] = lines[at].replace(EXPORT_CALL, `${indent}ret = ${call[2]}`);
  let callEnd = at;
  // The statement ends on its first line (`f(a, b);`) or on a line at its
  // indent that closes it (`});` after an object argument).
  while (!lines[callEnd].endsWith(');') || (callEnd > at && lines[callEnd] !== `${indent}});`)) {
    callEnd++;
    if (callEnd === lines.length || callEnd > at + 64) {
      throw new Error(`bindings patch: no end for \`${lines[at].trim()}\``);
    }
  }
  const end = lines.indexOf('}', callEnd);
  const shape = (what) => new Error(`bindings patch: ${name}: ${what}`);
  if (end < 0 || lines[end - 1] !== '  return;') {
    throw shape('the wrapper does not end with `return;`');
  }

  // With borrowed handles, the call sits in `try { ... } finally { <release> }`.
  let release = null;
  let borrows = null;
  let tail = callEnd + 1;
  if (lines[callEnd + 1] === '  } finally {') {
    if (lines[at - 1] !== '  try {' || !TAKE_BORROWS.test(lines[at - 3])) {
      throw shape('unexpected lines around the borrows');
    }
    borrows = TAKE_BORROWS.exec(lines[at - 3])[1];
    const close = lines.indexOf('  }', callEnd + 2);
    if (close < 0 || close > end) {
      throw shape('no end for the `finally` block');
    }
    release = lines.slice(callEnd + 2, close);
    tail = close + 1;
  }
  const paramNames = new Set(params.split(', '));
  let argReads = 0;
  const throughArgView = (line) =>
    line.replace(ARG_ACCESS, (whole, method, arg) => {
      if (!paramNames.has(arg)) {
        return whole;
      }
      argReads++;
      return `__dvIn.${method}(${arg} + `;
    });
  const lower = lines.slice(tail, end - 1).map(throughArgView);
  if (lower.some((line) => /\breturn\b/.test(line))) {
    throw shape('the lowering returns early');
  }

  const callLines = lines.slice(at, callEnd + 1).map(throughArgView);
  if (release) {
    release = release.map((line) => {
      const loop = BORROWS_LOOP.exec(line);
      if (!loop) {
        return line;
      }
      const [, indent, list] = loop;
      return `${indent}for (let __i = 0; __i < ${list}.length; __i++) {\n${indent}  const entry = ${list}[__i];`;
    });
    if (!release.some((line) => line.includes('const entry = '))) {
      throw shape('no `for (const entry of borrowsN)` loop ending the borrows');
    }
  }
  const settleArgs = [borrows, params].filter(Boolean).join(', ');
  const settle = `return ${name}$settle(ret, ${settleArgs});`;
  const isPromise = "typeof ret?.then === 'function'";
  const wrapper = [`function ${name}(${params}) {`, ...lines.slice(start + 1, at)];
  const settler = [`async function ${name}$settle(ret, ${settleArgs}) {`];
  if (release) {
    wrapper.splice(wrapper.length - 1, 0, '  let __pending = false;');
    wrapper.push(
      ...callLines,
      `    if (${isPromise}) {`,
      '      __pending = true;',
      `      ${settle}`,
      '    }',
      '  } finally {',
      '    if (!__pending) {',
      ...release,
      '    }',
      '  }',
    );
    settler.push('  try {', '    ret = await ret;', '  } finally {', ...release, '  }');
  } else {
    wrapper.push(...callLines, `  if (${isPromise}) ${settle}`);
    settler.push('  ret = await ret;');
  }
  if (argReads > 0) {
    // The memory at a parameter (the arguments, the return area) was allocated
    // before the call: a DataView made when the wrapper starts covers it.
    if (!wrapper.includes(`  const __dvIn = ${READ};`)) {
      wrapper.splice(1, 0, `  const __dvIn = ${READ};`);
    }
    if (lower.some((line) => line.includes('__dvIn.'))) {
      settler.push(`  const __dvIn = ${READ};`);
    }
  }
  wrapper.push(...lower, '  return __DONE;');
  settler.push(...lower);
  const replacement = [...reportingThrows(wrapper), '', ...reportingThrows(settler)];
  lines.splice(start, end - start + 1, ...replacement);
  return replacement.length;
}

/**
 * A function's lines (its header, then its body, without the closing brace)
 * with the body in `try { ... } catch`, so that whatever it throws, the
 * policy's own error or the glue's (a decision it cannot lower), is reported
 * through `__reportThrow` before it propagates and traps the instance. A `try`
 * costs nothing until something is thrown.
 */
function reportingThrows([header, ...body]) {
  return [
    header,
    '  try {',
    ...body,
    '  } catch (__thrown) {',
    '    __reportThrow(__thrown);',
    '    throw __thrown;',
    '  }',
    '}',
  ];
}

/** The registry calls for the borrowed `request` handle (whole lines). */
const REQUEST_FINALIZATION = /^[ \t]*finalizationRegistry_[\w$]*\$request\.(register|unregister)\(.*\);\n/gm;

/** Giving a lifted resource its handle: a property definition, with a descriptor object per call. */
const DEFINE_HANDLE =
  /Object\.defineProperty\((rsc\d+), symbolRscHandle, \{ writable: true, value: (handle\d+)\}\);/g;

/**
 * A resource method that wraps its body in a closure and calls it:
 * `m(a) {` / `function helper(arg0, arg1) {` / body / `}` / `return helper(this, a);` / `}`.
 */
const METHOD_HELPER =
  /^( {2})([\w$]+)\((.*)\) \{\n {4}function helper\((.*)\) \{\n([\s\S]*?)\n {4}\}\n {4}return helper\((.*)\);\n {2}\}$/gm;

/**
 * Inlines each resource method's `helper` closure: the method takes the
 * helper's parameters after the first, and names `this` as the first. Returns
 * the new text and how many methods were rewritten.
 */
function inlineMethodHelpers(text) {
  let count = 0;
  const out = text.replace(METHOD_HELPER, (whole, indent, method, params, helperParams, body, args) => {
    const [self, ...rest] = helperParams.split(', ');
    const methodParams = params ? params.split(', ') : [];
    const forwardsAll = args === ['this', ...methodParams].join(', ');
    const usesThis = /\b(this|arguments)\b/.test(body);
    if (!forwardsAll || usesThis || rest.length !== methodParams.length) {
      return whole; // not the expected shape: counted as not inlined, which fails the build
    }
    count++;
    return `${indent}${method}(${rest.join(', ')}) {\n    const ${self} = this;\n${body}\n${indent}}`;
  });
  return { text: out, count };
}

/**
 * Wraps the glue in a function scope. At the top level of the initializer
 * script, every reference to the glue's own declarations (`$memory`,
 * `dataView`, `symbolRscHandle`, ...) is a global name lookup, which the
 * interpreter does by name on each use; inside a function they are slots in
 * an environment the bytecode addresses directly. The embedding finds
 * `bindExports` and the export wrappers on the global, so they are put there.
 */
function closeOver(text, names, hostLog) {
  return [
    '(() => {',
    '/** What a synchronous export returns: one settled promise, made once. */',
    'const __DONE = Promise.resolve();',
    reportThrow(hostLog),
    text,
    `Object.assign(globalThis, { ${names.join(', ')} });`,
    '})();',
    '',
  ].join('\n');
}

/** The glue's wrapper of the host's `log` import, by its name: `function import_..._host_0_1_0$log(arg0, arg1) {`. */
const HOST_LOG = /^function (import_[\w$]*_host_[\w$]*\$log)\(arg0, arg1\) \{$/gm;

/** Most UTF-16 units of a thrown value's report sent to the host (which keeps 1 KiB of a line). */
const REPORT_MAX = 1024;

/**
 * `__reportThrow(thrown)`, which every export wrapper calls with what it
 * caught before rethrowing it. The embedding would print an uncaught error on
 * stderr, but a policy's component is built without stdio, and the instance
 * traps with only "`unreachable` instruction executed". So the error is logged
 * at `error` level through the host's `log` import (`hostLog`, the glue's
 * wrapper of it), as `Uncaught Error: message (at fn@file:line:column)`; the
 * frame is left out when it is the glue's own (a decision the glue cannot
 * lower). The gateway keeps a call's error lines for its trap report, which
 * then names the error, as it does a Python guest's exception. The report
 * never throws (a value that cannot be made a string is reported as such), so
 * the original error is what propagates.
 */
function reportThrow(hostLog) {
  return `/** This script's file (a temporary path at build time), to leave its frames out of reports. */
const __GLUE_FILE = new Error().fileName || '@';
/** Logs what an export threw, before the instance traps on it (see bindings-patch.mjs). */
function __reportThrow(thrown) {
  let text = '(a value that cannot be converted to a string)';
  try {
    text = String(thrown);
    // The policy's errors come from another realm: no \`instanceof Error\`.
    const stack = typeof thrown === 'object' && thrown !== null ? thrown.stack : undefined;
    if (typeof stack === 'string') {
      const end = stack.indexOf('\\n');
      const frame = end < 0 ? stack : stack.slice(0, end);
      if (frame !== '' && !frame.includes(__GLUE_FILE)) {
        text += \` (at \${frame})\`;
      }
    }
  } catch {}
  try {
    ${hostLog}('error', \`Uncaught \${text}\`.slice(0, ${REPORT_MAX}));
  } catch {}
}`;
}

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

  for (const name of ['__DONE', '__pending', '$settle', '__reportThrow', '__thrown', '__GLUE_FILE']) {
    if (out.includes(name)) {
      fail(`the glue already uses the name \`${name}\``);
    }
  }
  const handles = out.match(DEFINE_HANDLE)?.length ?? 0;
  if (handles === 0) {
    fail('no `Object.defineProperty(rscN, symbolRscHandle, ...)` for a lifted handle');
  }
  out = out.replace(DEFINE_HANDLE, '$1[symbolRscHandle] = $2;');

  const methods = (out.match(/^ {4}function helper\(/gm) ?? []).length;
  const inlined = inlineMethodHelpers(out);
  if (inlined.count === 0 || inlined.count !== methods) {
    fail(`inlined ${inlined.count} of ${methods} resource methods' \`helper\` closures`);
  }
  out = inlined.text;

  const lines = out.split('\n');
  const wrappers = lines.filter((line) => EXPORT_START.test(line)).length;
  const imports = patchImports(lines);
  const exports = patchExports(lines);
  if (imports === 0 || exports === 0) {
    fail(`found ${imports} import and ${exports} export wrappers reading guest memory`);
  }
  out = lines.join('\n').replace(U64_READ, '$1.getBigUint64($2, true)');

  const globals = [...out.matchAll(/^function (export_[\w$]+)\(/gm)].map((m) => m[1]);
  if (!/^ *function bindExports\(/m.test(out) || globals.length !== wrappers) {
    fail(`expected \`bindExports\` and ${wrappers} export wrappers at the top level`);
  }
  const hostLog = [...out.matchAll(HOST_LOG)].map((m) => m[1]);
  if (hostLog.length !== 1) {
    fail(`expected 1 wrapper of the host's \`log\` import, found ${hostLog.length}`);
  }
  return closeOver(out, ['bindExports', ...globals], hostLog[0]);
}

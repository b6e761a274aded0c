// Helpers for Switchyard policies written in JavaScript (componentize-js).
//
// Import it from your policy with a relative path, e.g.
//   import { route, reject, header } from '../../guest-sdk/js/switchyard.js';
// componentize-js bundles relative imports at build time (the build runs from
// the repository root, so paths up to the root resolve).
//
// Shapes (componentize-js maps WIT names to camelCase):
//   decision  { tag: 'route', val: plan } | { tag: 'reject', val: rejection }
//   plan      { targets: string[], retryOn: RetryOn, reason: string }
//   retry-on  { connectError, timeout, rateLimited, serverError } (booleans)
//   rejection { status: number, code: string, message: string }

/** Every failure that allows trying the next target. */
export const RETRY_ALL = Object.freeze({
  connectError: true,
  timeout: true,
  rateLimited: true,
  serverError: true,
});

/** No fallback: the first target's answer is final. */
export const RETRY_NONE = Object.freeze({
  connectError: false,
  timeout: false,
  rateLimited: false,
  serverError: false,
});

/**
 * A route decision trying `targets` in order. `targets` holds candidate
 * upstream names, or candidates themselves.
 */
export function route(targets, { retryOn = RETRY_ALL, reason = '' } = {}) {
  return {
    tag: 'route',
    val: {
      targets: targets.map((t) => (typeof t === 'string' ? t : t.upstream)),
      retryOn,
      reason,
    },
  };
}

/** A rejection returned to the client as an OpenAI-style error. */
export function reject(status, code, message) {
  return { tag: 'reject', val: { status, code, message } };
}

/** The value of request header `name` (lower-case), or undefined. */
export function header(req, name) {
  for (const [key, value] of req.headers) {
    if (key === name) {
      return value;
    }
  }
  return undefined;
}

/**
 * True when the comma-separated `list` holds `item`, after trimming each
 * entry. Empty entries never match; an undefined list holds nothing.
 */
export function listContains(list, item) {
  if (list === undefined || list === null || item === undefined || item === null) {
    return false;
  }
  return list.split(',').some((entry) => {
    const trimmed = entry.trim();
    return trimmed !== '' && trimmed === item;
  });
}

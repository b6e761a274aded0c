// Helpers for Switchyard policies written in JavaScript (componentize-js).
//
// Import it from your policy with a relative path, e.g.
//   import { offerOf, route, reject } from '../../guest-sdk/js/switchyard.js';
// componentize-js bundles relative imports at build time (the build runs from
// the repository root, so paths up to the root resolve).
//
// Shapes (componentize-js maps WIT names to camelCase):
//   req        a `request` resource: req.tenant(), req.header('x-foo'), req.model(), ...
//              (methods; each string read is copied into the guest, so read only what
//              you need, and only during `decide`)
//   candidate  { id: number, health: 'healthy' | 'degraded' | 'cooling-down' | 'unhealthy' };
//              the rest of its live state (latencyEwmaMs, inFlight, errorRate, ...) is
//              req.liveState(candidate.id), read only when a rule needs it
//   offer      { upstream, provider, region, jurisdiction, tags, upstreamModel,
//                inputPerMtok, outputPerMtok }: use offerOf(candidate), which caches it
//   decision   { tag: 'route', val: plan } | { tag: 'reject', val: rejection }
//   plan       { targets: number[] or Uint32Array (candidate ids), retryOn: RetryOn,
//                reason: string } (route() builds a Uint32Array: cheaper to pass back)
//   retry-on   { connectError, timeout, rateLimited, serverError } (booleans)
//   rejection  { status: number, code: string, message: string }
//
// There is no `header(req, name)` helper any more: the request is a resource,
// call `req.header(name)` (any case, first value, or undefined).
import { config as hostConfig, offerOf as hostOfferOf } from 'switchyard:policy/host@0.1.0';

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

// Offers by candidate id. An id names the same upstream and model for the whole
// life of an instance, so each is fetched from the host once, on first use.
const offers = [];

/**
 * The fixed facts (`offer`) of a candidate, given the candidate or its id:
 * `{ upstream, provider, region, jurisdiction, tags, upstreamModel,
 * inputPerMtok, outputPerMtok }`. The first call for an id asks the host; later
 * calls return the same (cached) object, so do not modify it.
 */
export function offerOf(candidate) {
  const id = typeof candidate === 'number' ? candidate : candidate.id;
  let facts = offers[id];
  if (facts === undefined) {
    facts = hostOfferOf(id);
    offers[id] = facts;
  }
  return facts;
}

// Config values by key (`undefined` when absent); they never change during an
// instance's life.
const configs = new Map();

/** This policy's config value for `key` (string or undefined), read from the host once. */
export function config(key) {
  let value = configs.get(key);
  if (value === undefined && !configs.has(key)) {
    value = hostConfig(key);
    configs.set(key, value);
  }
  return value;
}

// Parsed comma-separated config lists by key.
const configSets = new Map();

/**
 * The comma-separated config value for `key` as a Set of its trimmed, non-empty
 * entries (empty when the key is absent). Parsed once per instance.
 */
export function configSet(key) {
  let set = configSets.get(key);
  if (set === undefined) {
    set = new Set();
    for (const entry of (config(key) ?? '').split(',')) {
      const trimmed = entry.trim();
      if (trimmed !== '') {
        set.add(trimmed);
      }
    }
    configSets.set(key, set);
  }
  return set;
}

/**
 * A route decision trying `targets` in order. `targets` is an array of
 * candidates or candidate ids; the plan lists their ids, as a `Uint32Array`
 * (which the generated bindings copy into the component as one block, where a
 * plain array is checked and copied id by id). `options` is
 * `{ retryOn = RETRY_ALL, reason = '' }`, both optional.
 */
export function route(targets, options) {
  const count = targets.length;
  const ids = new Uint32Array(count);
  for (let i = 0; i < count; i++) {
    const target = targets[i];
    const id = typeof target === 'number' ? target : target.id;
    // A Uint32Array would silently wrap a bad id; fail as the bindings would.
    if (id !== id >>> 0) {
      throw new TypeError(`route: target ${i} is not a candidate id (u32): ${id}`);
    }
    ids[i] = id;
  }
  let retryOn = RETRY_ALL;
  let reason = '';
  if (options !== undefined) {
    if (options.retryOn !== undefined) {
      retryOn = options.retryOn;
    }
    if (options.reason !== undefined) {
      reason = options.reason;
    }
  }
  return { tag: 'route', val: { targets: ids, retryOn, reason } };
}

/** A rejection returned to the client as an OpenAI-style error. */
export function reject(status, code, message) {
  return { tag: 'reject', val: { status, code, message } };
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

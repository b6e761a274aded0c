// The `compliance` policy in JavaScript, the same rule as policies/compliance
// (Rust) and passing the same cases.json:
// - A request is EU-bound when its tenant is listed in config `eu_tenants`
//   (comma-separated, entries trimmed, exact match) or when it carries the
//   header `x-data-residency: eu` (value trimmed, any case).
// - An EU-bound request keeps only candidates whose jurisdiction is `eu` (any
//   case), in order; when candidates were given but none is in the EU, it is
//   rejected 403 `residency_violation`. No candidates at all: an empty plan.
// - Every other request passes through untouched, in the same order.
import { ignoreOutcomes } from 'switchyard:policy/host@0.1.0';
import { configSet, offerOf, reject, route } from '../../guest-sdk/js/switchyard.js';

// Per call, only the tenant (and, when it does not decide, one header) is read
// from the host. The rest is kept for the instance's life, so that a warm call
// does as little as it can: every operation runs in SpiderMonkey's interpreter.

/** The config's EU tenants (a Set), parsed on first use. */
let euTenants;

/** Whether candidate id `i` is in the EU (`true`/`false`), by id, from its cached offer. */
const inEu = [];

/** Why the request must stay in the EU, or undefined when it need not. */
function euBound(req) {
  const tenant = req.tenant();
  if (tenant !== undefined && tenant !== '') {
    if (euTenants === undefined) {
      euTenants = configSet('eu_tenants');
    }
    if (euTenants.has(tenant)) {
      return `tenant '${tenant}' must stay in the EU`;
    }
  }
  if (req.header('x-data-residency')?.trim().toLowerCase() === 'eu') {
    return 'the request asks for EU data residency (x-data-residency: eu)';
  }
  return undefined;
}

export function decide(req, candidates) {
  const why = euBound(req);
  if (why === undefined) {
    return route(candidates, { reason: 'not EU-bound: pass-through' });
  }
  const count = candidates.length;
  if (count === 0) {
    return route([], { reason: `${why}: no candidates` });
  }
  const eu = [];
  for (let i = 0; i < count; i++) {
    const id = candidates[i].id;
    let isEu = inEu[id];
    if (isEu === undefined) {
      isEu = offerOf(id).jurisdiction.toLowerCase() === 'eu';
      inEu[id] = isEu;
    }
    if (isEu) {
      eu.push(id);
    }
  }
  if (eu.length === 0) {
    return reject(403, 'residency_violation',
      `${why}, but no EU upstream serves model '${req.model()}'`);
  }
  return route(eu, { reason: `${why}: kept ${eu.length} of ${count} candidates` });
}

// Nothing to keep: tell the gateway to stop sending outcomes.
export function observe(_outcome) {
  ignoreOutcomes();
}

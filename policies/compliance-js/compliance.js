// The `compliance` policy in JavaScript, the same rule as policies/compliance
// (Rust) and passing the same cases.json:
// - A request is EU-bound when its tenant is listed in config `eu_tenants`
//   (comma-separated, entries trimmed, exact match) or when it carries the
//   header `x-data-residency: eu` (value trimmed, any case).
// - An EU-bound request keeps only candidates whose jurisdiction is `eu` (any
//   case), in order; when candidates were given but none is in the EU, it is
//   rejected 403 `residency_violation`. No candidates at all: an empty plan.
// - Every other request passes through untouched, in the same order.
import { configSet, offerOf, reject, route } from '../../guest-sdk/js/switchyard.js';

/** Why the request must stay in the EU, or undefined when it need not. */
function euBound(req) {
  const tenant = req.tenant();
  if (tenant !== undefined && tenant !== '' && configSet('eu_tenants').has(tenant)) {
    return `tenant '${tenant}' must stay in the EU`;
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
  if (candidates.length === 0) {
    return route([], { reason: `${why}: no candidates` });
  }
  const eu = candidates.filter((c) => offerOf(c).jurisdiction.toLowerCase() === 'eu');
  if (eu.length === 0) {
    return reject(403, 'residency_violation',
      `${why}, but no EU upstream serves model '${req.model()}'`);
  }
  return route(eu, { reason: `${why}: kept ${eu.length} of ${candidates.length} candidates` });
}

export function observe(_outcome) {}

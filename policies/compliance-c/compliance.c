// The `compliance` policy in C, the same rule as policies/compliance (Rust)
// and passing the same cases.json:
// - A request is EU-bound when its tenant is listed in config `eu_tenants`
//   (comma-separated, entries trimmed, exact match) or when it carries the
//   header `x-data-residency: eu` (value trimmed, any case).
// - An EU-bound request keeps only candidates whose jurisdiction is `eu` (any
//   case), in order; when candidates were given but none is in the EU, it is
//   rejected 403 `residency_violation`. No candidates at all: an empty plan.
// - Every other request passes through untouched, in the same order.
#include "switchyard_policy.h"

#include <stdlib.h>

// Why a request must stay in the EU.
enum eu_bound { NOT_EU_BOUND, EU_TENANT, EU_HEADER };

static enum eu_bound eu_bound(const sy_request_t *req) {
  if (req->tenant.is_some && req->tenant.val.len > 0) {
    policy_string_t tenants;
    if (sy_config("eu_tenants", &tenants)) {
      bool listed = sy_list_contains(&tenants, &req->tenant.val);
      policy_string_free(&tenants);
      if (listed) {
        return EU_TENANT;
      }
    }
  }
  const policy_string_t *residency = sy_header(req, "x-data-residency");
  if (residency != NULL) {
    policy_string_t value = sy_str_trim(residency);
    if (sy_str_eq_ignore_case(&value, "eu")) {
      return EU_HEADER;
    }
  }
  return NOT_EU_BOUND;
}

void exports_policy_decide(sy_request_t *req, sy_candidates_t *candidates,
                           sy_decision_t *ret) {
  enum eu_bound bound = eu_bound(req);
  sy_route(ret, SY_RETRY_ON_ALL);
  if (bound == NOT_EU_BOUND) {
    for (size_t i = 0; i < candidates->len; i++) {
      sy_route_push(ret, &candidates->ptr[i]);
    }
    sy_route_reason(ret, "not EU-bound: pass-through");
    sy_decide_done(req, candidates);
    return;
  }

  sy_text_t why = {0};
  if (bound == EU_TENANT) {
    sy_text_push(&why, "tenant '");
    sy_text_push(sy_text_push_str(&why, &req->tenant.val),
                 "' must stay in the EU");
  } else {
    sy_text_push(&why, "the request asks for EU data residency "
                       "(x-data-residency: eu)");
  }
  size_t kept = 0;
  for (size_t i = 0; i < candidates->len; i++) {
    const sy_candidate_t *c = &candidates->ptr[i];
    if (sy_str_eq_ignore_case(&c->jurisdiction, "eu")) {
      sy_route_push(ret, c);
      kept++;
    }
  }
  if (candidates->len == 0) {
    sy_route_reason(ret, sy_text_get(sy_text_push(&why, ": no candidates")));
  } else if (kept == 0) {
    sy_text_push(&why, ", but no EU upstream serves model '");
    sy_text_push(sy_text_push_str(&why, &req->model), "'");
    policy_decision_free(ret);
    sy_reject(ret, 403, "residency_violation", sy_text_get(&why));
  } else {
    sy_text_push_u64(sy_text_push(&why, ": kept "), kept);
    sy_text_push_u64(sy_text_push(&why, " of "), candidates->len);
    sy_route_reason(ret, sy_text_get(sy_text_push(&why, " candidates")));
  }
  sy_text_free(&why);
  sy_decide_done(req, candidates);
}

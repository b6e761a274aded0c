// The `compliance` policy in C, the same rule as policies/compliance (Rust)
// and passing the same cases.json:
// - A request is EU-bound when its tenant is listed in config `eu_tenants`
//   (comma-separated, entries trimmed, exact match) or when it carries the
//   header `x-data-residency: eu` (value trimmed, any case).
// - An EU-bound request keeps only candidates whose jurisdiction is `eu` (any
//   case), in order; when candidates were given but none is in the EU, it is
//   rejected 403 `residency_violation`. No candidates at all: an empty plan.
// - Every other request passes through untouched, in the same order.
//
// Per call it reads the tenant, then the header only when the tenant is not
// listed, and the model only for a rejection. Config and offers are cached.
#include "switchyard_policy.h"

// True when the request's tenant is listed in `eu_tenants`; `tenant` then
// holds it (free it with `policy_string_free`).
static bool eu_tenant(sy_request_t req, policy_string_t *tenant) {
  const policy_string_t *tenants = sy_config("eu_tenants");
  if (tenants == NULL ||
      !switchyard_policy_types_method_request_tenant(req, tenant)) {
    return false;
  }
  if (tenant->len > 0 && sy_list_contains(tenants, tenant)) {
    return true;
  }
  policy_string_free(tenant);
  return false;
}

// True when the request carries `x-data-residency: eu`.
static bool eu_header(sy_request_t req) {
  policy_string_t residency;
  if (!sy_header(req, "x-data-residency", &residency)) {
    return false;
  }
  policy_string_t value = sy_str_trim(&residency);
  bool eu = sy_str_eq_ignore_case(&value, "eu");
  policy_string_free(&residency);
  return eu;
}

static bool in_eu(const sy_candidate_t *c) {
  return sy_str_eq_ignore_case(&sy_offer(c->id)->jurisdiction, "eu");
}

void exports_policy_decide(sy_request_t req, sy_candidates_t *candidates,
                           sy_decision_t *ret) {
  policy_string_t tenant;
  sy_text_t why = {0};
  if (eu_tenant(req, &tenant)) {
    sy_text_push(&why, "tenant '");
    sy_text_push(sy_text_push_str(&why, &tenant), "' must stay in the EU");
    policy_string_free(&tenant);
  } else if (eu_header(req)) {
    sy_text_push(&why, "the request asks for EU data residency "
                       "(x-data-residency: eu)");
  } else {
    sy_route(ret, SY_RETRY_ON_ALL);
    for (size_t i = 0; i < candidates->len; i++) {
      sy_route_push(ret, candidates->ptr[i].id);
    }
    sy_route_reason(ret, "not EU-bound: pass-through");
    sy_decide_done(req, candidates);
    return;
  }

  size_t kept = 0;
  for (size_t i = 0; i < candidates->len; i++) {
    kept += in_eu(&candidates->ptr[i]);
  }
  if (candidates->len > 0 && kept == 0) {
    policy_string_t model;
    switchyard_policy_types_method_request_model(req, &model);
    sy_text_push(&why, ", but no EU upstream serves model '");
    sy_text_push(sy_text_push_str(&why, &model), "'");
    policy_string_free(&model);
    sy_reject_text(ret, 403, "residency_violation", &why);
    sy_decide_done(req, candidates);
    return;
  }

  sy_route(ret, SY_RETRY_ON_ALL);
  if (candidates->len == 0) {
    sy_text_push(&why, ": no candidates");
  } else {
    for (size_t i = 0; i < candidates->len; i++) {
      if (in_eu(&candidates->ptr[i])) {
        sy_route_push(ret, candidates->ptr[i].id);
      }
    }
    sy_text_push_u64(sy_text_push(&why, ": kept "), kept);
    sy_text_push_u64(sy_text_push(&why, " of "), candidates->len);
    sy_text_push(&why, " candidates");
  }
  sy_route_reason_text(ret, &why);
  sy_decide_done(req, candidates);
}

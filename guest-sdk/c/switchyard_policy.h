// Helpers for Switchyard policies written in C.
//
// Builds on the bindings that `guest-tool c-bindings` generates for the
// `policy` world (policy.h / policy.c / policy_component_type.o). Include this
// header instead of policy.h; link switchyard_policy.c with your policy.
//
// Ownership, as the generated bindings define it:
// - `exports_policy_decide` owns its arguments: free them before returning
//   (`sy_decide_done` does that).
// - The decision you return is freed by the bindings after the host has copied
//   it, so every string in it must be heap-allocated. The builders below copy
//   their inputs.
#ifndef SWITCHYARD_POLICY_HELPERS_H
#define SWITCHYARD_POLICY_HELPERS_H

#include "policy.h"

#ifdef __cplusplus
extern "C" {
#endif

// Short names for the generated types.
typedef policy_request_t sy_request_t;
typedef policy_candidate_t sy_candidate_t;
typedef policy_list_candidate_t sy_candidates_t;
typedef policy_decision_t sy_decision_t;
typedef switchyard_policy_types_retry_on_t sy_retry_on_t;

// Every failure that allows trying the next target.
#define SY_RETRY_ON_ALL                                                        \
  (SWITCHYARD_POLICY_TYPES_RETRY_ON_CONNECT_ERROR |                           \
   SWITCHYARD_POLICY_TYPES_RETRY_ON_TIMEOUT |                                 \
   SWITCHYARD_POLICY_TYPES_RETRY_ON_RATE_LIMITED |                            \
   SWITCHYARD_POLICY_TYPES_RETRY_ON_SERVER_ERROR)

// `s` without leading and trailing ASCII whitespace (a view: no copy).
policy_string_t sy_str_trim(const policy_string_t *s);

// A growable, heap-allocated, NUL-terminated text for reasons and messages.
// (No printf: wasi-libc's stdio would pull WASI imports into the component.)
// Start with `sy_text_t t = {0};`, end with `sy_text_free(&t)`.
typedef struct {
  char *ptr;
  size_t len;
} sy_text_t;

// Appends a C string, a WIT string, or a number in decimal; returns `t`.
sy_text_t *sy_text_push(sy_text_t *t, const char *s);
sy_text_t *sy_text_push_str(sy_text_t *t, const policy_string_t *s);
sy_text_t *sy_text_push_u64(sy_text_t *t, uint64_t n);

// The text so far ("" when empty).
const char *sy_text_get(const sy_text_t *t);

void sy_text_free(sy_text_t *t);

// True when `s` holds exactly the NUL-terminated `text`.
bool sy_str_eq(const policy_string_t *s, const char *text);

// True when `s` equals `text`, ignoring ASCII case.
bool sy_str_eq_ignore_case(const policy_string_t *s, const char *text);

// The value of request header `name` (lower-case), or NULL when absent.
const policy_string_t *sy_header(const sy_request_t *req, const char *name);

// Looks up this policy's config key; on success `out` holds a string you must
// free with `policy_string_free`.
bool sy_config(const char *key, policy_string_t *out);

// True when the comma-separated `list` has an item equal to `item` after
// trimming spaces and tabs around each item. Empty items never match.
bool sy_list_contains(const policy_string_t *list, const policy_string_t *item);

// Writes a log line through the host.
void sy_log(switchyard_policy_host_log_level_t level, const char *message);

// Starts a route decision with no targets and no reason.
void sy_route(sy_decision_t *ret, sy_retry_on_t retry_on);

// Appends a copy of `candidate->upstream` to the route's targets.
void sy_route_push(sy_decision_t *ret, const sy_candidate_t *candidate);

// Sets the route's reason (copied).
void sy_route_reason(sy_decision_t *ret, const char *reason);

// Makes `ret` a rejection (code and message are copied).
void sy_reject(sy_decision_t *ret, uint16_t status, const char *code,
               const char *message);

// Frees `decide`'s arguments; call it once you no longer read them.
void sy_decide_done(sy_request_t *req, sy_candidates_t *candidates);

#ifdef __cplusplus
}
#endif

#endif

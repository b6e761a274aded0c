// Helpers for Switchyard policies written in C.
//
// Builds on the bindings that `guest-tool c-bindings` generates for the
// `policy` world (policy.h / policy.c / policy_component_type.o). Include this
// header instead of policy.h; link switchyard_policy.c with your policy.
//
// Ownership, as the generated bindings define it:
// - `exports_policy_decide` gets the request as a borrowed handle and owns the
//   candidate list. Before returning it must drop the handle and free the list:
//   `sy_decide_done` does both. (A borrow still held when `decide` returns
//   makes the host trap the call.)
// - Every string a request method or host import returns is a fresh copy the
//   policy owns: free it with `policy_string_free` (or the matching `*_free`).
// - The decision you return is freed by the bindings after the host has copied
//   it, so every string and list in it must be heap-allocated. The builders
//   below copy their inputs.
// - The offer and config caches below own what they hand out: never free it.
#ifndef SWITCHYARD_POLICY_HELPERS_H
#define SWITCHYARD_POLICY_HELPERS_H

#include "policy.h"

#ifdef __cplusplus
extern "C" {
#endif

// Short names for the generated types.
typedef switchyard_policy_types_borrow_request_t sy_request_t;
typedef policy_candidate_t sy_candidate_t;
typedef policy_list_candidate_t sy_candidates_t;
typedef switchyard_policy_types_offer_t sy_offer_t;
typedef policy_decision_t sy_decision_t;
typedef switchyard_policy_types_retry_on_t sy_retry_on_t;

// Every failure that allows trying the next target.
#define SY_RETRY_ON_ALL                                                        \
  (SWITCHYARD_POLICY_TYPES_RETRY_ON_CONNECT_ERROR |                           \
   SWITCHYARD_POLICY_TYPES_RETRY_ON_TIMEOUT |                                 \
   SWITCHYARD_POLICY_TYPES_RETRY_ON_RATE_LIMITED |                            \
   SWITCHYARD_POLICY_TYPES_RETRY_ON_SERVER_ERROR)

// --- Strings ---------------------------------------------------------------

// `s` without leading and trailing ASCII whitespace (a view: no copy).
policy_string_t sy_str_trim(const policy_string_t *s);

// True when `s` holds exactly the NUL-terminated `text`.
bool sy_str_eq(const policy_string_t *s, const char *text);

// True when `s` equals `text`, ignoring ASCII case.
bool sy_str_eq_ignore_case(const policy_string_t *s, const char *text);

// True when the comma-separated `list` has an item equal to `item` after
// trimming spaces and tabs around each item. Empty items never match.
bool sy_list_contains(const policy_string_t *list, const policy_string_t *item);

// A growable, heap-allocated, NUL-terminated text for reasons and messages.
// (No printf: wasi-libc's stdio would pull WASI imports into the component.)
// Start with `sy_text_t t = {0};`, end with `sy_text_free(&t)`.
typedef struct {
  char *ptr;
  size_t len;
  size_t cap;
} sy_text_t;

// Appends a C string, a WIT string, or a number in decimal; returns `t`.
sy_text_t *sy_text_push(sy_text_t *t, const char *s);
sy_text_t *sy_text_push_str(sy_text_t *t, const policy_string_t *s);
sy_text_t *sy_text_push_u64(sy_text_t *t, uint64_t n);

// The text so far ("" when empty).
const char *sy_text_get(const sy_text_t *t);

void sy_text_free(sy_text_t *t);

// --- The request -----------------------------------------------------------
// Read anything else with the generated methods, e.g.
// `switchyard_policy_types_method_request_tenant(req, &out)`; each string
// read is one copy into the guest that you free with `policy_string_free`.

// The first value of request header `name` (any case). On true, `out` holds a
// copy you free with `policy_string_free`; on false there is nothing to free
// (the bindings leave `out` undefined).
bool sy_header(sy_request_t req, const char *name, policy_string_t *out);

// --- Cached host facts -----------------------------------------------------

// The fixed facts of candidate `id` (`host.offer-of`). Each id is fetched from
// the host once per instance and kept: a warm call makes no import call. The
// pointer stays valid for the instance's life; do not free it.
const sy_offer_t *sy_offer(uint32_t id);

// This policy's config value for `key`, or NULL when the key is absent.
// Fetched once per key and kept (config does not change during an instance's
// life); the pointer stays valid for the instance's life; do not free it.
const policy_string_t *sy_config(const char *key);

// Writes a log line through the host.
void sy_log(switchyard_policy_host_log_level_t level, const char *message);

// --- Decisions -------------------------------------------------------------

// Starts a route decision with no targets and no reason.
void sy_route(sy_decision_t *ret, sy_retry_on_t retry_on);

// Appends candidate `id` to the route's targets.
void sy_route_push(sy_decision_t *ret, uint32_t id);

// Sets the route's reason (copied).
void sy_route_reason(sy_decision_t *ret, const char *reason);

// Sets the route's reason to the text built in `reason`, moving its buffer
// (no copy); `reason` is left empty and needs no `sy_text_free`.
void sy_route_reason_text(sy_decision_t *ret, sy_text_t *reason);

// Makes `ret` a rejection (code and message are copied). `ret` is written,
// not freed: when it already holds a route, `policy_decision_free(ret)` first.
void sy_reject(sy_decision_t *ret, uint16_t status, const char *code,
               const char *message);

// `sy_reject` with the message moved out of `message` (no copy); `message`
// is left empty and needs no `sy_text_free`.
void sy_reject_text(sy_decision_t *ret, uint16_t status, const char *code,
                    sy_text_t *message);

// Ends `decide`: drops the request handle and frees the candidate list. Call
// it exactly once, after the last read of either.
void sy_decide_done(sy_request_t req, sy_candidates_t *candidates);

#ifdef __cplusplus
}
#endif

#endif

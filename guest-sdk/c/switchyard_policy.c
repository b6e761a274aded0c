// Helpers for Switchyard policies written in C; see switchyard_policy.h.
#include "switchyard_policy.h"

#include <stdlib.h>
#include <string.h>

static bool is_space(uint8_t c) {
  return c == ' ' || c == '\t' || c == '\n' || c == '\r' || c == '\v' ||
         c == '\f';
}

policy_string_t sy_str_trim(const policy_string_t *s) {
  size_t a = 0, b = s->len;
  while (a < b && is_space(s->ptr[a])) {
    a++;
  }
  while (b > a && is_space(s->ptr[b - 1])) {
    b--;
  }
  return (policy_string_t){s->ptr + a, b - a};
}

bool sy_str_eq(const policy_string_t *s, const char *text) {
  size_t n = strlen(text);
  return s->len == n && memcmp(s->ptr, text, n) == 0;
}

static unsigned char ascii_lower(unsigned char c) {
  return (c >= 'A' && c <= 'Z') ? (unsigned char)(c - 'A' + 'a') : c;
}

bool sy_str_eq_ignore_case(const policy_string_t *s, const char *text) {
  size_t n = strlen(text);
  if (s->len != n) {
    return false;
  }
  for (size_t i = 0; i < n; i++) {
    if (ascii_lower(s->ptr[i]) != ascii_lower((unsigned char)text[i])) {
      return false;
    }
  }
  return true;
}

const policy_string_t *sy_header(const sy_request_t *req, const char *name) {
  for (size_t i = 0; i < req->headers.len; i++) {
    if (sy_str_eq(&req->headers.ptr[i].f0, name)) {
      return &req->headers.ptr[i].f1;
    }
  }
  return NULL;
}

bool sy_config(const char *key, policy_string_t *out) {
  policy_string_t k;
  policy_string_set(&k, key);
  return switchyard_policy_host_config(&k, out);
}

bool sy_list_contains(const policy_string_t *list, const policy_string_t *item) {
  size_t start = 0;
  while (start <= list->len) {
    size_t end = start;
    while (end < list->len && list->ptr[end] != ',') {
      end++;
    }
    policy_string_t entry = {list->ptr + start, end - start};
    entry = sy_str_trim(&entry);
    if (entry.len > 0 && entry.len == item->len &&
        memcmp(entry.ptr, item->ptr, item->len) == 0) {
      return true;
    }
    start = end + 1;
  }
  return false;
}

void sy_log(switchyard_policy_host_log_level_t level, const char *message) {
  policy_string_t m;
  policy_string_set(&m, message);
  switchyard_policy_host_log(level, &m);
}

void sy_route(sy_decision_t *ret, sy_retry_on_t retry_on) {
  ret->tag = SWITCHYARD_POLICY_TYPES_DECISION_ROUTE;
  // Stays NULL while empty: the bindings free the list only when it has items.
  ret->val.route.targets.ptr = NULL;
  ret->val.route.targets.len = 0;
  ret->val.route.retry_on = retry_on;
  ret->val.route.reason = (policy_string_t){NULL, 0};
}

static void copy_string(policy_string_t *dst, const policy_string_t *src) {
  policy_string_dup_n(dst, (const char *)src->ptr, src->len);
}

void sy_route_push(sy_decision_t *ret, const sy_candidate_t *candidate) {
  policy_list_string_t *targets = &ret->val.route.targets;
  // Plans are short; one realloc per target keeps the bookkeeping trivial.
  targets->ptr =
      realloc(targets->ptr, (targets->len + 1) * sizeof(policy_string_t));
  if (targets->ptr == NULL) {
    abort();
  }
  copy_string(&targets->ptr[targets->len], &candidate->upstream);
  targets->len++;
}

static sy_text_t *text_append(sy_text_t *t, const void *bytes, size_t n) {
  char *grown = realloc(t->ptr, t->len + n + 1);
  if (grown == NULL) {
    abort();
  }
  memcpy(grown + t->len, bytes, n);
  t->ptr = grown;
  t->len += n;
  t->ptr[t->len] = '\0';
  return t;
}

sy_text_t *sy_text_push(sy_text_t *t, const char *s) {
  return text_append(t, s, strlen(s));
}

sy_text_t *sy_text_push_str(sy_text_t *t, const policy_string_t *s) {
  return text_append(t, s->ptr, s->len);
}

sy_text_t *sy_text_push_u64(sy_text_t *t, uint64_t n) {
  char digits[20];
  size_t i = sizeof digits;
  do {
    digits[--i] = (char)('0' + n % 10);
    n /= 10;
  } while (n > 0);
  return text_append(t, digits + i, sizeof digits - i);
}

const char *sy_text_get(const sy_text_t *t) { return t->ptr ? t->ptr : ""; }

void sy_text_free(sy_text_t *t) {
  free(t->ptr);
  t->ptr = NULL;
  t->len = 0;
}

void sy_route_reason(sy_decision_t *ret, const char *reason) {
  policy_string_free(&ret->val.route.reason);
  policy_string_dup(&ret->val.route.reason, reason);
}

void sy_reject(sy_decision_t *ret, uint16_t status, const char *code,
               const char *message) {
  ret->tag = SWITCHYARD_POLICY_TYPES_DECISION_REJECT;
  ret->val.reject.status = status;
  policy_string_dup(&ret->val.reject.code, code);
  policy_string_dup(&ret->val.reject.message, message);
}

void sy_decide_done(sy_request_t *req, sy_candidates_t *candidates) {
  policy_request_free(req);
  policy_list_candidate_free(candidates);
}

// A policy that keeps no budgets needs no `observe`: this default frees the
// outcome. Defining `exports_policy_observe` in the policy replaces it.
__attribute__((weak)) void exports_policy_observe(policy_outcome_t *outcome) {
  policy_outcome_free(outcome);
}

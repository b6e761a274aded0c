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

bool sy_header(sy_request_t req, const char *name, policy_string_t *out) {
  policy_string_t n;
  policy_string_set(&n, name);
  return switchyard_policy_types_method_request_header(req, &n, out);
}

// `items` (an array of `*cap` elements of `size` bytes, `len` in use) with
// room for one more; aborts when out of memory.
static void *grow(void *items, size_t *cap, size_t len, size_t size) {
  if (len < *cap) {
    return items;
  }
  size_t new_cap = *cap ? *cap * 2 : 16;
  void *grown = realloc(items, new_cap * size);
  if (grown == NULL) {
    abort();
  }
  *cap = new_cap;
  return grown;
}

// The offer cache: one heap entry per id seen (entries never move, so the
// pointers handed out stay valid), indexed by a pointer array sorted by id.
// Gateway ids are small and dense, so `offers[id]` is usually the one.
typedef struct {
  uint32_t id;
  sy_offer_t offer;
} offer_entry_t;

static offer_entry_t **offers;
static size_t offers_len, offers_cap;

const sy_offer_t *sy_offer(uint32_t id) {
  if (id < offers_len && offers[id]->id == id) {
    return &offers[id]->offer;
  }
  size_t lo = 0, hi = offers_len;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (offers[mid]->id < id) {
      lo = mid + 1;
    } else {
      hi = mid;
    }
  }
  if (lo < offers_len && offers[lo]->id == id) {
    return &offers[lo]->offer;
  }
  offer_entry_t *entry = malloc(sizeof *entry);
  if (entry == NULL) {
    abort();
  }
  entry->id = id;
  switchyard_policy_host_offer_of(id, &entry->offer);
  offers = grow(offers, &offers_cap, offers_len, sizeof *offers);
  memmove(&offers[lo + 1], &offers[lo],
          (offers_len - lo) * sizeof(offer_entry_t *));
  offers[lo] = entry;
  offers_len++;
  return &entry->offer;
}

// The config cache: one heap entry per key asked for, present or not.
typedef struct {
  char *key;
  bool present;
  policy_string_t value;
} config_entry_t;

static config_entry_t **configs;
static size_t configs_len, configs_cap;

const policy_string_t *sy_config(const char *key) {
  for (size_t i = 0; i < configs_len; i++) {
    if (strcmp(configs[i]->key, key) == 0) {
      return configs[i]->present ? &configs[i]->value : NULL;
    }
  }
  config_entry_t *entry = malloc(sizeof *entry);
  size_t key_len = strlen(key);
  char *key_copy = malloc(key_len + 1);
  if (entry == NULL || key_copy == NULL) {
    abort();
  }
  memcpy(key_copy, key, key_len + 1);
  entry->key = key_copy;
  policy_string_t k = {(uint8_t *)key_copy, key_len};
  entry->present = switchyard_policy_host_config(&k, &entry->value);
  configs = grow(configs, &configs_cap, configs_len, sizeof *configs);
  configs[configs_len++] = entry;
  return entry->present ? &entry->value : NULL;
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

// The targets buffer has no capacity field, so the capacity follows from the
// length: none while empty (the bindings free the list only when it has
// items), then 8 slots, doubling each time a power of two >= 8 is full.
static bool targets_full(size_t len) {
  return len == 0 || (len >= 8 && (len & (len - 1)) == 0);
}

void sy_route_push(sy_decision_t *ret, uint32_t id) {
  policy_list_u32_t *targets = &ret->val.route.targets;
  if (targets_full(targets->len)) {
    size_t cap = targets->len == 0 ? 8 : targets->len * 2;
    uint32_t *grown = realloc(targets->ptr, cap * sizeof(uint32_t));
    if (grown == NULL) {
      abort();
    }
    targets->ptr = grown;
  }
  targets->ptr[targets->len++] = id;
}

static sy_text_t *text_append(sy_text_t *t, const void *bytes, size_t n) {
  if (t->len + n + 1 > t->cap) {
    size_t cap = t->cap ? t->cap * 2 : 64;
    while (cap < t->len + n + 1) {
      cap *= 2;
    }
    char *grown = realloc(t->ptr, cap);
    if (grown == NULL) {
      abort();
    }
    t->ptr = grown;
    t->cap = cap;
  }
  memcpy(t->ptr + t->len, bytes, n);
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
  *t = (sy_text_t){0};
}

// Moves the text's buffer into a WIT string (no copy) and empties `t`. The
// buffer came from malloc, which is what the bindings free it with.
static policy_string_t text_take(sy_text_t *t) {
  policy_string_t s = {(uint8_t *)t->ptr, t->len};
  if (t->len == 0) {
    free(t->ptr);
    s.ptr = NULL;
  }
  *t = (sy_text_t){0};
  return s;
}

void sy_route_reason(sy_decision_t *ret, const char *reason) {
  policy_string_free(&ret->val.route.reason);
  policy_string_dup(&ret->val.route.reason, reason);
}

void sy_route_reason_text(sy_decision_t *ret, sy_text_t *reason) {
  policy_string_free(&ret->val.route.reason);
  ret->val.route.reason = text_take(reason);
}

void sy_reject(sy_decision_t *ret, uint16_t status, const char *code,
               const char *message) {
  ret->tag = SWITCHYARD_POLICY_TYPES_DECISION_REJECT;
  ret->val.reject.status = status;
  policy_string_dup(&ret->val.reject.code, code);
  policy_string_dup(&ret->val.reject.message, message);
}

void sy_reject_text(sy_decision_t *ret, uint16_t status, const char *code,
                    sy_text_t *message) {
  ret->tag = SWITCHYARD_POLICY_TYPES_DECISION_REJECT;
  ret->val.reject.status = status;
  policy_string_dup(&ret->val.reject.code, code);
  ret->val.reject.message = text_take(message);
}

void sy_decide_done(sy_request_t req, sy_candidates_t *candidates) {
  switchyard_policy_types_request_drop_borrow(req);
  policy_list_candidate_free(candidates);
}

// A policy that keeps no budgets needs no `observe`: this default frees the
// outcome and tells the gateway (`ignore-outcomes`) to stop calling it.
// Defining `exports_policy_observe` in the policy replaces it.
__attribute__((weak)) void exports_policy_observe(policy_outcome_t *outcome) {
  policy_outcome_free(outcome);
  switchyard_policy_host_ignore_outcomes();
}

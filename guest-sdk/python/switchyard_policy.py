"""Helpers for Switchyard policies written in Python (componentize-py).

Add this folder to the build's module path (`componentize-py ... -p
guest-sdk/python`) and import it next to the generated `wit_world` bindings:

    from switchyard_policy import RETRY_ALL, offer_of, reject, route

The request is a resource: read it with its methods (`req.tenant()`,
`req.header("x-foo")`, `req.model()`, ...), only during `decide`. There is no
`header(req, name)` helper any more; call `req.header(name)`.

A candidate is `types.Candidate(id, health)`; the rest of its live state
(latency, load, error rate, cooldown, rate limits) is `req.live_state(id)`, read
only when a rule needs it. Its fixed facts (upstream name, jurisdiction, prices,
...) are the `types.Offer` that `offer_of(candidate)` returns, fetched from the
host once per id and cached. Plans list candidate ids.
"""

from typing import Dict, Iterable, Optional, Set, Union

from wit_world.imports import host, types

#: Every failure that allows trying the next target.
RETRY_ALL = (
    types.RetryOn.CONNECT_ERROR
    | types.RetryOn.TIMEOUT
    | types.RetryOn.RATE_LIMITED
    | types.RetryOn.SERVER_ERROR
)

#: No fallback: the first target's answer is final.
RETRY_NONE = types.RetryOn(0)

# The generated record classes, bound once: a module global is found faster
# than an attribute of `types` on every call. Arguments are passed by position
# (the dataclasses' field order), which is cheaper than by keyword.
_Plan = types.Plan
_Rejection = types.Rejection
_Decision_Route = types.Decision_Route
_Decision_Reject = types.Decision_Reject

# Offers by candidate id. An id names the same upstream and model for the whole
# life of an instance, so each is fetched from the host once, on first use.
_offers: Dict[int, types.Offer] = {}


def offer_of(candidate: Union[int, types.Candidate]) -> types.Offer:
    """The fixed facts (`types.Offer`: upstream, provider, region, jurisdiction,
    tags, upstream_model, input_per_mtok, output_per_mtok) of a candidate, given
    the candidate or its id. The first call for an id asks the host; later calls
    return the same (cached) object, so do not modify it."""
    cid = candidate if isinstance(candidate, int) else candidate.id
    facts = _offers.get(cid)
    if facts is None:
        facts = _offers[cid] = host.offer_of(cid)
    return facts


# Config values by key (None when absent); they never change during an
# instance's life.
_configs: Dict[str, Optional[str]] = {}

# Parsed comma-separated config lists by key.
_config_sets: Dict[str, Set[str]] = {}


def config(key: str) -> Optional[str]:
    """This policy's config value for `key` (or None), read from the host once."""
    try:
        return _configs[key]
    except KeyError:
        value = _configs[key] = host.config(key)
        return value


def config_set(key: str) -> Set[str]:
    """The comma-separated config value for `key` as a set of its trimmed,
    non-empty entries (empty when the key is absent). Parsed once per instance."""
    entries = _config_sets.get(key)
    if entries is None:
        raw = config(key) or ""
        entries = _config_sets[key] = {e.strip() for e in raw.split(",") if e.strip()}
    return entries


def route(
    targets: Iterable[Union[int, types.Candidate]],
    retry_on: types.RetryOn = RETRY_ALL,
    reason: str = "",
) -> types.Decision:
    """A route decision trying `targets` (candidates or candidate ids) in order."""
    ids = [t if isinstance(t, int) else t.id for t in targets]
    return _Decision_Route(_Plan(ids, retry_on, reason))


def reject(status: int, code: str, message: str) -> types.Decision:
    """A rejection returned to the client as an OpenAI-style error."""
    return _Decision_Reject(_Rejection(status, code, message))


def list_contains(items: Optional[str], item: Optional[str]) -> bool:
    """True when the comma-separated `items` holds `item` after trimming each
    entry. Empty entries never match; None holds nothing."""
    if items is None or item is None:
        return False
    return any(entry.strip() == item for entry in items.split(",") if entry.strip())

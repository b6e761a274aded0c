"""The `compliance` policy in Python, the same rule as policies/compliance
(Rust) and passing the same cases.json:

- A request is EU-bound when its tenant is listed in config `eu_tenants`
  (comma-separated, entries trimmed, exact match) or when it carries the header
  `x-data-residency: eu` (value trimmed, any case).
- An EU-bound request keeps only candidates whose jurisdiction is `eu` (any
  case), in order; when candidates were given but none is in the EU, it is
  rejected 403 `residency_violation`. No candidates at all: an empty plan.
- Every other request passes through untouched, in the same order.
"""

from typing import Dict, List, Optional, Set

import wit_world
from wit_world.imports import host, types
from switchyard_policy import config_set, offer_of, reject, route

# Per call, only the tenant (and, when it does not decide, one header) is read
# from the host. The rest is kept for the instance's life: the config's EU
# tenants, and whether each candidate id is in the EU (from its cached offer).
_eu_tenants: Optional[Set[str]] = None
_in_eu: Dict[int, bool] = {}


def eu_bound(req: types.Request) -> Optional[str]:
    """Why the request must stay in the EU, or None when it need not."""
    global _eu_tenants
    tenant = req.tenant()
    if tenant:
        if _eu_tenants is None:
            _eu_tenants = config_set("eu_tenants")
        if tenant in _eu_tenants:
            return f"tenant '{tenant}' must stay in the EU"
    residency = req.header("x-data-residency")
    if residency is not None and residency.strip().lower() == "eu":
        return "the request asks for EU data residency (x-data-residency: eu)"
    return None


class WitWorld(wit_world.WitWorld):
    def decide(self, req: types.Request, candidates: List[types.Candidate]) -> types.Decision:
        why = eu_bound(req)
        if why is None:
            return route(candidates, reason="not EU-bound: pass-through")
        if not candidates:
            return route([], reason=f"{why}: no candidates")
        eu = []
        for c in candidates:
            cid = c.id
            is_eu = _in_eu.get(cid)
            if is_eu is None:
                is_eu = _in_eu[cid] = offer_of(cid).jurisdiction.lower() == "eu"
            if is_eu:
                eu.append(cid)
        if not eu:
            return reject(
                403,
                "residency_violation",
                f"{why}, but no EU upstream serves model '{req.model()}'",
            )
        return route(eu, reason=f"{why}: kept {len(eu)} of {len(candidates)} candidates")

    def observe(self, outcome: types.Outcome) -> None:
        # Nothing to keep: tell the gateway to stop sending outcomes.
        host.ignore_outcomes()

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

from typing import List, Optional

import wit_world
from wit_world.imports import types
from switchyard_policy import config_set, offer_of, reject, route


def eu_bound(req: types.Request) -> Optional[str]:
    """Why the request must stay in the EU, or None when it need not."""
    tenant = req.tenant()
    if tenant and tenant in config_set("eu_tenants"):
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
        eu = [c for c in candidates if offer_of(c).jurisdiction.lower() == "eu"]
        if not eu:
            return reject(
                403,
                "residency_violation",
                f"{why}, but no EU upstream serves model '{req.model()}'",
            )
        return route(eu, reason=f"{why}: kept {len(eu)} of {len(candidates)} candidates")

    def observe(self, outcome: types.Outcome) -> None:
        pass

"""Helpers for Switchyard policies written in Python (componentize-py).

Add this folder to the build's module path (`componentize-py ... -p
guest-sdk/python`) and import it next to the generated `wit_world` bindings:

    from switchyard_policy import RETRY_ALL, header, reject, route
"""

from typing import Iterable, Optional, Union

from wit_world.imports import types

#: Every failure that allows trying the next target.
RETRY_ALL = (
    types.RetryOn.CONNECT_ERROR
    | types.RetryOn.TIMEOUT
    | types.RetryOn.RATE_LIMITED
    | types.RetryOn.SERVER_ERROR
)

#: No fallback: the first target's answer is final.
RETRY_NONE = types.RetryOn(0)


def route(
    targets: Iterable[Union[str, types.Candidate]],
    retry_on: types.RetryOn = RETRY_ALL,
    reason: str = "",
) -> types.Decision:
    """A route decision trying `targets` (upstream names or candidates) in order."""
    names = [t if isinstance(t, str) else t.upstream for t in targets]
    return types.Decision_Route(types.Plan(targets=names, retry_on=retry_on, reason=reason))


def reject(status: int, code: str, message: str) -> types.Decision:
    """A rejection returned to the client as an OpenAI-style error."""
    return types.Decision_Reject(types.Rejection(status=status, code=code, message=message))


def header(req: types.Request, name: str) -> Optional[str]:
    """The value of request header `name` (lower-case), or None."""
    for key, value in req.headers:
        if key == name:
            return value
    return None


def list_contains(items: Optional[str], item: Optional[str]) -> bool:
    """True when the comma-separated `items` holds `item` after trimming each
    entry. Empty entries never match; None holds nothing."""
    if items is None or item is None:
        return False
    return any(entry.strip() == item for entry in items.split(",") if entry.strip())

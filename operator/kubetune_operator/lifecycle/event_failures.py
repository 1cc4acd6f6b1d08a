"""An Event the API refused is said in status.warnings: what the user would have read is never only a log line.

Deduplicated and bounded: one EventNotPosted warning per Event reason (the first refusal's words),
and at most `UNPOSTED_KEPT` of them, so an API that refuses every Event (a missing RBAC rule, a
full quota) cannot grow the status. Pure.
"""

from __future__ import annotations

from kubetune_trainer.contract import WarningNote

from ..api.conditions import EventNote, Reason

UNPOSTED_KEPT = 5
MESSAGE_SHOWN = 300


def _prefix(note: EventNote) -> str:
    return f"Event {note.reason} was not posted"


def with_unposted(warnings: list[WarningNote], refused: list[tuple[EventNote, str]]) -> list[WarningNote] | None:
    """`warnings` with one EventNotPosted warning per newly refused Event reason; None when nothing is new.

    `refused`: each Event the API refused, with the API's reason (never the request, which holds no secret
    either: Event messages are the operator's own words).
    """
    kept = list(warnings)
    unposted = [w for w in kept if w.reason == Reason.EVENT_NOT_POSTED]
    for note, why in refused:
        if len(unposted) >= UNPOSTED_KEPT:
            break
        if any(w.message.startswith(_prefix(note) + ":") for w in unposted):
            continue
        said = note.message if len(note.message) <= MESSAGE_SHOWN else note.message[: MESSAGE_SHOWN - 1] + "…"
        warning = WarningNote(
            reason=Reason.EVENT_NOT_POSTED,
            message=f"{_prefix(note)}: the API refused it ({why}); it said: {said} "
            "(check the operator's RBAC for events and the namespace's quota)",
        )
        kept.append(warning)
        unposted.append(warning)
    return kept if len(kept) != len(warnings) else None

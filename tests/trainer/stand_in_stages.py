"""Stand-ins for the five stages, for tests of the pipeline's own bookkeeping (records, errors, the Result).

Each stand-in hands on a marker naming its stage and checks it was handed the markers of the
stages whose hand-offs it takes (a real stage's hand-off, where one replaces a stand-in, is
passed over), so a run of stand-ins also shows the pipeline threads every stage's value to the
stages after it. `each` runs in every stage (to warn, fail or record);
keyword arguments replace single stages.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from kubetune_trainer.context import RunContext
from kubetune_trainer.contract import Stage
from kubetune_trainer.pipeline import Stages


@dataclass(frozen=True)
class Marker:
    """What a stand-in hands on in place of its stage's hand-off."""

    stage: Stage
    training_tokens: int | None = None
    """What DataDownload's record would carry (the pipeline reads it from the download's hand-off)."""


def stand_in_stages(each: Callable[[RunContext, Stage], None] | None = None, **replaced: Any) -> Stages:
    def act(stage: Stage, ctx: RunContext, handed: tuple[object, ...], takes: tuple[Stage, ...]) -> Any:
        assert len(handed) == len(takes), f"{stage} was handed {handed}"
        for value, earlier in zip(handed, takes, strict=True):
            assert value == Marker(earlier) or not isinstance(value, Marker), f"{stage} was handed {handed}"
        if each is not None:
            each(ctx, stage)
        return Marker(stage)

    stages = Stages(
        download=lambda ctx: act(Stage.DATA_DOWNLOAD, ctx, (), ()),
        initialize=lambda ctx, d: act(Stage.INITIALIZATION, ctx, (d,), (Stage.DATA_DOWNLOAD,)),
        train=lambda ctx, d, i: act(Stage.TRAINING, ctx, (d, i), (Stage.DATA_DOWNLOAD, Stage.INITIALIZATION)),
        save=lambda ctx, d, i, t: act(
            Stage.SAVING, ctx, (d, i, t), (Stage.DATA_DOWNLOAD, Stage.INITIALIZATION, Stage.TRAINING)
        ),
        upload=lambda ctx, s: act(Stage.UPLOAD, ctx, (s,), (Stage.SAVING,)),
    )
    return dataclasses.replace(stages, **replaced)

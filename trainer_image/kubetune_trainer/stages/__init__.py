"""One module per stage, each exposing `run(ctx: RunContext) -> None`; `pipeline.STAGES` orders them."""

"""One module per stage, each exposing `run(ctx, <earlier hand-offs>) -> <its hand-off>` (see `handoffs`);
`pipeline.Stages` types them and `pipeline` threads their values in order."""

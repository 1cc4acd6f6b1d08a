"""The saved model streamed from the ranks' shards: no process ever holds the whole model.

Under FSDP2 each rank holds a shard of every parameter. The Saving stage plans the output's
safetensors files from the parameters' names and sizes (the same plan on every rank, no
communication), then for each output file gathers that file's tensors one at a time
(`DTensor.full_tensor()`, a collective every rank joins in the same order), and rank 0 writes
the file and frees it before the next one. A LoRA merge happens per tensor as it is gathered.
The verification then loads the written tensors back into the ranks' own shards, one tensor at
a time, and scores them with the trained model's forward: again never more than one tensor
above a rank's own shard.

- `shards`: the plan (output file per tensor, `model.safetensors.index.json`), pure;
- `sources`: which tensor of the trained model each output name comes from (full, merged LoRA,
  adapter), gathered on demand;
- `stream`: the gather-write-free loop;
- `reload`: the written tensors back into the sharded model, for the verification.
"""

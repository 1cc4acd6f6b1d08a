"""The training loop and what it needs: optimizer, schedule, precision, LoRA, distribution, evaluation.

`loop.train` reads top to bottom, nanoGPT-style: epochs, optimizer steps, gradient accumulation,
evaluation and checkpoint cadence all in one function. The modules beside it build its parts.
"""

"""kubetune's trainer: the staged fine-tuning program that runs inside trainer pods.

`kubetune_trainer.contract` is the interface the operator and the trainer share; it imports
neither torch nor kopf, so the operator can use it without the ML stack.
"""

"""The FineTuneJob state machine, pure: (spec, status, resolution, observation, now) -> (status, events, actions)."""

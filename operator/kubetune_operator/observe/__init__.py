"""What the cluster says happened, as pure functions: pods, batch Jobs and termination messages -> `Observation`."""

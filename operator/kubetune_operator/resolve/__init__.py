"""What really runs, as pure functions: the template catalog, template choice, limits, and the resolution.

(job spec, templates, model facts) -> `ResolvedJob`, or why not, as a value. Nothing here reads the
cluster or the Hub.
"""

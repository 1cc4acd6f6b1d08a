"""The controller runtime under the kopf handlers: the cache of what kopf watched, one worker per job
(the reconcile queue), the reconcile pass that reads the cache, calls the pure core, patches and acts."""

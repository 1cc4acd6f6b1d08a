"""The sandbox: kubetune end to end on one machine, without a Kubernetes cluster.

`kubetune sandbox` runs an emulated Kubernetes API (`emulator.ApiEmulator`, served over TLS on
loopback), the real operator as a process of its own, a Job controller and a pod runner that starts
each pod the operator creates as local processes. It is for trying kubetune and for end-to-end
tests: the operator and the trainer are the real ones; the API server, the Job controller and the
kubelet are small emulations that do what kubetune relies on and say in their docstrings what they
leave out.

It is not a cluster: no scheduler, no admission, RBAC or CEL rules, no containers or images (pods
run the sandbox's own Python), no resource limits, no DNS (Service host names are rewritten to
loopback ports). Nothing else in kubetune_operator imports this package; its third-party
dependencies come with the `kubetune[sandbox]` extra.
"""

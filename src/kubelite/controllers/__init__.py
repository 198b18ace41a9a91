"""kube-controller-manager's and kube-scheduler's counterparts.

Each controller watches what it needs through shared informers and reconciles one key at a
time from a work queue: it reads the caches, computes the desired state and writes the
difference through the API. They are level-triggered: a controller restarted mid-way
converges to the same result. All of them run in the ``kubelite controllers`` process.
"""

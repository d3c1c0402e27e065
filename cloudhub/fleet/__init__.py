"""The fleet as operators see it: the ``fleet`` module follows nodes, pods and devices for the
fleet page and the metrics (:mod:`cloudhub.fleet.view`), and records Kubernetes Events
(:mod:`cloudhub.fleet.derive` says which, :mod:`cloudhub.fleet.eventstore` keeps them)."""

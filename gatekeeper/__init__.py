"""The Kubernetes validating admission webhook (issue #3): the second front door over
:func:`mlgate.gate.check`. Reserved: nothing here yet."""

"""mlgate: a policy-as-code compliance gate for ML model deployments.

The core library. It imports neither click nor a web framework; the CLI
(``mlgate.cli``) and the admission webhook (``mlgate.gatekeeper``) are thin
front doors over :func:`mlgate.gate.check`.
"""

__version__ = "0.1.0"

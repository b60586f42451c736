"""The Kubernetes validating admission webhook (issue #3): the second front door over the core gate.

``review`` parses and answers AdmissionReview (v1, v1beta1); ``refs`` finds model references in
workloads, KServe and Seldon objects; ``service`` judges one review with :mod:`mlgate.gate`
(synchronous, on the gate thread); ``app`` is the raw ASGI app; ``server`` is uvicorn over TLS
with certificate reload; ``manifests`` and ``certs`` produce what a cluster needs.
Nothing here is imported by ``mlgate --help``.
"""

"""The policy side: what a policy set is, where it comes from, and the engines that evaluate it.

- :mod:`~mlgate.policy.policyset`: :class:`PolicySet` (modules, data, trust policy, revision) and
  loading one from a directory (the bundled library by default);
- :mod:`~mlgate.policy.bundle`: OPA bundles (``*.tar.gz``), built, signed, read and verified;
- :mod:`~mlgate.policy.layers`: several sources as one policy (the library, then an
  organisation's own packages: ``--policy`` given more than once);
- :mod:`~mlgate.policy.rego_ast`: the policy set as the embedded engine parses it (modules, rule
  heads, builtin calls); the builtin check the engines run at load lives here, below both the
  engines and the authoring tools (:mod:`mlgate.policytools`);
- :mod:`~mlgate.policy.engine`: the :class:`~mlgate.policy.engine.PolicyEngine` seam and its
  engines (regorus, rego-cpp, a remote OPA).

May import: :mod:`mlgate.errors`, :mod:`mlgate.canonical`, :mod:`mlgate.safeio`, :mod:`mlgate.clock`
and :mod:`mlgate.signing` (bundle signatures). Never the gate, the stores, the audit trail, the
authoring tools or the front doors. Modules inside this package import each other directly,
never through this ``__init__``.
"""

from __future__ import annotations

from pathlib import Path

from mlgate.policy.policyset import DATA_NAMES, TRUST_POLICY_NAME, Module, PolicySet, bundled_policy_dir, load_policy_dir

__all__ = ["DATA_NAMES", "TRUST_POLICY_NAME", "Module", "PolicySet", "bundled_policy_dir", "load_policy", "load_policy_dir"]


def load_policy(root: Path | str | tuple[Path | str, ...] | list[Path | str] | None = None, *, data_overrides: list[Path] | None = None,
                bundle_key: Path | None = None, require_finding_ids: bool = True) -> PolicySet:
    """Load a policy directory (default: the policy library shipped with mlgate), an OPA bundle
    (``*.tar.gz``, see :mod:`mlgate.policy.bundle`) or an OPA bundle in an OCI registry
    (``oci://...``, see :mod:`mlgate.policy.oci`), verified with ``bundle_key`` when given.

    A tuple or list of sources is a layered policy (:func:`mlgate.policy.layers.load_layers`): the
    bundled library beneath when the first defines no ``data.mlgate.decision``, then each in order."""
    from mlgate.policy.layers import load_layers, load_source

    if isinstance(root, (tuple, list)):
        return load_layers(tuple(root), data_overrides=data_overrides, bundle_key=bundle_key, require_finding_ids=require_finding_ids)
    return load_source(root, data_overrides=data_overrides, bundle_key=bundle_key, require_finding_ids=require_finding_ids)

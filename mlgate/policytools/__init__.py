"""Tools for the people who own the policies: ``mlgate policy test | lint | doc``.

One core per command (``testing.run_tests``, ``lint.lint``, ``doc.build_catalogue``); the CLI
in ``cli/policy_cmd.py`` only turns flags into a call and renders the result. Everything reads
the policies through :func:`mlgate.policy.load_policy` and the engine's own parse tree
(``get_ast_as_json``), so file and line numbers are the engine's.

May import :mod:`mlgate.policy` (policy sets, the Rego parse, engines) and the basics; the
engines never import this package (import-linter contract).
"""

"""The tree is the architecture: import-linter's contracts hold, and no module imports itself
back through another (design.md section 1, README "Layout")."""

from __future__ import annotations

import subprocess
import sys

import grimp

from conftest import REPO


def test_import_contracts_are_kept():
    proc = subprocess.run(["bash", str(REPO / ".ci" / "lint-imports")], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stdout[-4000:] + proc.stderr[-2000:]
    assert "0 broken" in proc.stdout


def test_no_module_imports_itself_back():
    graph = grimp.build_graph("mlgate", exclude_type_checking_imports=True)  # type-only imports do not run
    cycles = set()
    for module in graph.modules:
        for imported in graph.find_modules_directly_imported_by(module):
            if graph.find_shortest_chain(importer=imported, imported=module):
                cycles.add(tuple(sorted((module, imported))))
    assert not cycles, sorted(cycles)


def test_the_core_starts_without_the_doors_or_heavy_libraries():
    code = ("import sys, mlgate.gate, mlgate.audit, mlgate.policy, mlgate.store; "
            "bad = [m for m in ('click', 'uvicorn', 'mlgate.cli', 'mlgate.gatekeeper', 'psycopg', 'sigstore', 'pandas') if m in sys.modules]; "
            "print(bad)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout.strip()
    assert out == "[]", out

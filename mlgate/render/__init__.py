"""One renderer per output format (conftest's Outputter habit): ``render(decision) -> str``.

May import the gate's :class:`~mlgate.gate.Decision` and the basics; nothing below reads a renderer.
"""

from __future__ import annotations

from typing import Callable

from mlgate.gate import Decision

FORMATS = ("text", "json", "junit", "sarif", "github")


def renderer(fmt: str) -> Callable[[Decision], str]:
    if fmt == "text":
        from mlgate.render.text import render
    elif fmt == "json":
        from mlgate.render.json_out import render
    elif fmt == "junit":
        from mlgate.render.junit import render
    elif fmt == "sarif":
        from mlgate.render.sarif import render
    elif fmt == "github":  # GitHub Actions workflow commands (annotations)
        from mlgate.render.github import render
    else:
        raise ValueError(f"unknown output format {fmt!r}")
    return render

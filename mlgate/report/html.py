"""Escaping by construction: every string is text unless it is :class:`Markup` built here.

Evidence is hostile input (a model card, a group name, a signer's printed name, a violation
message can hold ``<script>``). Nothing from it is ever concatenated into markup: :func:`tag`
escapes every child and attribute value that is not already :class:`Markup`, and only
:func:`tag`, :func:`raw_static` (for the page's own constant CSS) and the SVG builder make
Markup. The page also carries a Content-Security-Policy that allows no script and no external
resource at all, as a second line of defence.
"""

from __future__ import annotations

import html
import re
from typing import Any, Iterable

_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f\x7f]")
_NAME = re.compile(r"^[a-z][a-z0-9-]*$")
_ATTR = re.compile(r"^[a-zA-Z][a-zA-Z0-9-]*$")  # SVG has camelCase attributes (viewBox)


class Markup(str):
    """A string that is already safe HTML. Only this module creates one."""

    __slots__ = ()


def esc(value: Any) -> Markup:
    if isinstance(value, Markup):
        return value
    text = "" if value is None else str(value)
    return Markup(html.escape(_CONTROL.sub("\ufffd", text), quote=True))


def raw_static(text: str) -> Markup:
    """Markup written in this package's source (never data)."""
    return Markup(text)


def _children(children: Iterable[Any]) -> str:
    out = []
    for child in children:
        if child is None or child is False:
            continue
        if isinstance(child, (list, tuple)):
            out.append(_children(child))
        else:
            out.append(esc(child))
    return "".join(out)


def tag(name: str, /, *children: Any, **attrs: Any) -> Markup:
    """``<name attr="...">children</name>``: attribute names come from code (``class_`` -> class,
    ``data_x`` -> data-x), values and children are escaped unless Markup."""
    if not _NAME.match(name):
        raise ValueError(f"bad tag name {name!r}")
    parts = [name]
    for key, value in attrs.items():
        if value is None or value is False:
            continue
        attr = key.rstrip("_").replace("_", "-")
        if not _ATTR.match(attr) or attr.lower().startswith("on"):
            raise ValueError(f"bad attribute name {attr!r}")
        parts.append(attr if value is True else f'{attr}="{esc(value)}"')
    return Markup(f"<{' '.join(parts)}>{_children(children)}</{name}>")


def void(name: str, /, **attrs: Any) -> Markup:
    """An element without content (``meta``, ``br``)."""
    inner = tag(name, **attrs)
    return Markup(inner[: inner.rindex("</")].rstrip(">") + ">")


def join(items: Iterable[Any], sep: Any = "") -> Markup:
    return Markup(esc(sep).join(esc(i) for i in items))

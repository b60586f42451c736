"""The control catalogue (``controls.yaml`` beside this module), parsed and checked once."""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache
from importlib import resources

import yaml

from mlgate.errors import PolicyError


@dataclass(frozen=True)
class Control:
    id: str
    framework: str
    title: str
    target: bool  # the library is expected to cover it (issue 5)


@dataclass(frozen=True)
class Catalogue:
    frameworks: dict[str, str]
    controls: tuple[Control, ...]

    def get(self, control_id: str) -> Control | None:
        return next((c for c in self.controls if c.id == control_id), None)

    @property
    def ids(self) -> set[str]:
        return {c.id for c in self.controls}


@lru_cache(maxsize=1)
def load_catalogue() -> Catalogue:
    name = "mlgate/policytools/controls.yaml"
    doc = yaml.safe_load(resources.files("mlgate.policytools").joinpath("controls.yaml").read_text(encoding="utf-8"))
    try:
        frameworks = {f["id"]: f["title"] for f in doc["frameworks"]}
        controls = tuple(Control(str(c["id"]), c["framework"], c["title"], bool(c.get("target", False))) for c in doc["controls"])
    except (KeyError, TypeError) as exc:
        raise PolicyError(f"malformed control catalogue: {exc}", file=name) from None
    for control in controls:
        if control.framework not in frameworks:
            raise PolicyError(f"control {control.id} names unknown framework {control.framework}", file=name)
    if len({c.id for c in controls}) != len(controls):
        raise PolicyError("duplicate control id", file=name)
    return Catalogue(frameworks, controls)

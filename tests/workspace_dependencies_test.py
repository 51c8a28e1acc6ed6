"""Every distribution declares the tellus-* distributions it imports, and no others.

deptry (in ``just test``) checks each distribution's third-party imports against its own
``pyproject.toml``, but it resolves an import by its top-level name only, and here every
distribution is a portion of the one namespace package ``tellus``. This test maps each
``tellus.<name>`` import (lazy ones and test modules included) to the workspace member
that owns ``src/tellus/<name>`` and checks that member is declared, with its
``[tool.uv.sources]`` workspace entry. A declared ``tellus-*`` distribution that is not
imported is not an error: it only names a lower layer that the distribution already gets
through the others (deptry still flags unused third-party dependencies).
"""

from __future__ import annotations

import ast
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
MEMBERS = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["uv"]["workspace"]["members"]


def _pyproject(member: str) -> dict:
    return tomllib.loads((ROOT / member / "pyproject.toml").read_text())


def _owners() -> dict[str, str]:
    """``{subpackage or module of tellus: distribution name}`` over the workspace (a module
    such as ``tellus/load.py`` counts as its own subpackage)."""
    out = {}
    for member in MEMBERS:
        name = _pyproject(member)["project"]["name"]
        for sub in (ROOT / member / "src" / "tellus").iterdir():
            if sub.is_dir() and any(sub.rglob("*.py")):
                out[sub.name] = name
            elif sub.suffix == ".py":
                out[sub.stem] = name
    return out


def _imported_subpackages(member: str) -> dict[str, str]:
    """``{subpackage of tellus: first place it is imported}`` in ``member``'s sources."""
    out: dict[str, str] = {}
    for path in sorted((ROOT / member / "src").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                modules = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                modules = (
                    [f"tellus.{a.name}" for a in node.names]
                    if node.module == "tellus"
                    else [node.module]
                )
            else:
                continue
            for module in modules:
                parts = module.split(".")
                if parts[0] == "tellus" and len(parts) > 1:
                    out.setdefault(parts[1], f"{path.relative_to(ROOT)}:{node.lineno}")
    return out


def _requirement_name(requirement: str) -> str:
    name = re.match(r"[A-Za-z0-9._-]+", requirement.strip())
    assert name, requirement
    return re.sub(r"[-_.]+", "-", name.group(0)).lower()


@pytest.mark.parametrize("member", MEMBERS)
def test_declares_the_tellus_distributions_it_imports(member):
    owners = _owners()
    project = _pyproject(member)
    own = project["project"]["name"]
    imported = _imported_subpackages(member)
    unknown = {sub: where for sub, where in imported.items() if sub not in owners}
    assert not unknown, f"{member} imports tellus packages no workspace member owns: {unknown}"
    needs = {owners[sub]: where for sub, where in imported.items() if owners[sub] != own}
    declared = {
        _requirement_name(r)
        for r in project["project"].get("dependencies", [])
        if _requirement_name(r) in owners.values()
    }
    missing = {name: where for name, where in sorted(needs.items()) if name not in declared}
    assert not missing, (
        f"{member}/pyproject.toml does not declare {sorted(missing)}, imported at {missing}"
    )
    sources = project.get("tool", {}).get("uv", {}).get("sources", {})
    no_source = [name for name in sorted(declared) if sources.get(name) != {"workspace": True}]
    assert not no_source, (
        f"{member}/pyproject.toml: add `{{ workspace = true }}` entries under "
        f"[tool.uv.sources] for {no_source}"
    )

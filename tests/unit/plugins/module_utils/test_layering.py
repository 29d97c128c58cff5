"""The layers of plugins/module_utils, read from the import statements (ast, nothing is imported).

discovery/ (readers of a node) imports nothing from plan/, features/, apply/ or proxmox/; plan/ and
features/ (the planners) import nothing from apply/; the pci_facts module, with everything it reaches
in module_utils, imports nothing from plan/ or features/. A failure names the file, the line and the
import.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PLUGINS = Path(__file__).resolve().parents[4] / "plugins"
MODULE_UTILS = PLUGINS / "module_utils"
PACKAGE = "ansible_collections.vfio.proxmox.plugins.module_utils"
LAYERS = ("discovery", "plan", "features", "apply", "proxmox")
FORBIDDEN = {
    "discovery": ("plan", "features", "apply", "proxmox"),
    "plan": ("apply",),
    "features": ("apply",),
}


def imports(path: Path, package: str) -> list[tuple[int, str, list[str]]]:
    """(line, statement, module_utils targets) of every import of module_utils in one file, at any depth.

    `from PACKAGE.layer import _x` names PACKAGE.layer and PACKAGE.layer._x (a name may be a module);
    a relative import is resolved against `package`, the dotted package the file lives in.
    """
    source = path.read_text(encoding="utf-8")
    found = []
    for node in ast.walk(ast.parse(source, str(path))):
        if isinstance(node, ast.Import):
            targets = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[:len(parts) - node.level + 1] + ([base] if base else []))
            targets = [base] + ["%s.%s" % (base, alias.name) for alias in node.names]
        else:
            continue
        targets = [t for t in targets if t == PACKAGE or t.startswith(PACKAGE + ".")]
        if targets:
            found.append((node.lineno, " ".join((ast.get_source_segment(source, node) or "").split()), targets))
    return found


def layer_of(target: str) -> str | None:
    rest = target[len(PACKAGE) + 1:].split(".") if target.startswith(PACKAGE + ".") else []
    return rest[0] if rest and rest[0] in LAYERS else None


def file_of(target: str) -> Path | None:
    """The module_utils file a dotted target names (a module, or a package's __init__.py), or None."""
    relative = Path(*target[len(PACKAGE) + 1:].split(".")) if target.startswith(PACKAGE + ".") else None
    if relative is None:
        return None
    for candidate in (MODULE_UTILS / relative.with_suffix(".py"), MODULE_UTILS / relative / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def package_of(path: Path) -> str:
    return ".".join([PACKAGE] + list(path.parent.relative_to(MODULE_UTILS).parts))


def violations(layer: str, forbidden: tuple[str, ...]) -> list[str]:
    out = []
    for path in sorted((MODULE_UTILS / layer).rglob("*.py")):
        for line, statement, targets in imports(path, package_of(path)):
            bad = sorted({layer_of(t) for t in targets} & set(forbidden))
            if bad:
                out.append("%s:%d imports %s/: %s" % (path.relative_to(PLUGINS.parent), line, "/, ".join(bad),
                                                      statement))
    return out


def test_module_utils_holds_only_the_layers():
    assert sorted(p.name for p in MODULE_UTILS.iterdir() if p.name != "__pycache__") == sorted(LAYERS)
    for layer in LAYERS:
        assert (MODULE_UTILS / layer / "__init__.py").is_file(), "%s/ has no __init__.py" % layer


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_a_layer_imports_nothing_above_it(layer):
    found = violations(layer, FORBIDDEN[layer])
    assert not found, "%s/ must not import from %s/:\n%s" % (layer, "/, ".join(FORBIDDEN[layer]), "\n".join(found))


def test_pci_facts_reaches_no_planner():
    module = PLUGINS / "modules" / "pci_facts.py"
    seen, todo, found = set(), [(module, "ansible_collections.vfio.proxmox.plugins.modules", "pci_facts.py")], []
    while todo:
        path, package, via = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for line, statement, targets in imports(path, package):
            where = "%s:%d" % (path.relative_to(PLUGINS.parent), line)
            bad = sorted({layer_of(t) for t in targets} & {"plan", "features"})
            if bad:
                found.append("%s imports %s/: %s (reached: %s)" % (where, "/, ".join(bad), statement, via))
            for target in targets:  # a planner reached is reported above, not walked into
                reached = file_of(target)
                if reached is not None and reached not in seen and layer_of(target) not in ("plan", "features"):
                    todo.append((reached, package_of(reached), "%s -> %s" % (via, where)))
    assert len(seen) > 5, "pci_facts reaches only %s: the import walk found nothing" % sorted(seen)
    assert not found, "pci_facts must not reach plan/ or features/:\n%s" % "\n".join(found)


def test_the_check_sees_a_forbidden_import(tmp_path):
    probe = tmp_path / "_probe.py"
    probe.write_text("def f():\n    from %s.features._passthrough import make_plan\n"
                     "    from . import _tree\n" % PACKAGE)
    found = imports(probe, PACKAGE + ".discovery")
    assert [(line, sorted({layer_of(t) for t in targets})) for line, _s, targets in found] == [
        (2, ["features"]), (3, ["discovery"])]
    assert file_of(found[1][2][-1]) == MODULE_UTILS / "discovery" / "_tree.py"

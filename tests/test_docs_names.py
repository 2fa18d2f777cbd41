"""The map of the code is true: README.md's layout table lists every module at the repository root,
and every ``module.name`` that README.md or docs/*.md cites (``neurons.LIF``, ``kernels.FusedSequence``)
exists."""
import importlib
import inspect
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
MODULES = sorted(p.stem for p in ROOT.glob("*.py"))
FILE_ENDINGS = {"py", "md", "png", "yaml", "json", "csv", "ipynb", "pth"}
CITED = re.compile(rf"(?<![\w.])({'|'.join(MODULES)})((?:\.[A-Za-z_]\w*)+)")  # not torch.utils.data.X


def member(owner: object, name: str) -> object:
    """``owner``'s attribute ``name`` as it is defined (a class's own or inherited), else KeyError."""
    for space in [vars(k) for k in inspect.getmro(owner)] if inspect.isclass(owner) else [vars(owner)]:
        if name in space:
            return space[name]
    raise KeyError(name)


def resolves(module: str, path: str) -> bool:
    owner: object = importlib.import_module(module)
    try:
        for name in path.split("."):
            owner = member(owner, name)
    except (KeyError, TypeError):
        return False
    return True


def citations(text: str) -> set[tuple[str, str]]:
    """``(module, dotted name)`` of every ``module.name`` of one of our modules, file names left out."""
    return {(m.group(1), m.group(2)[1:]) for m in CITED.finditer(text)
            if m.group(2)[1:].split(".")[0] not in FILE_ENDINGS}


def test_citations_parser_and_resolver():
    found = citations("`neurons.LIF`, `data.py`, `kernels.FusedSequence.apply`, docs/events.md, `maxformer.nope`, "
                      "torch.utils.data.DataLoader")
    assert found == {("neurons", "LIF"), ("kernels", "FusedSequence.apply"), ("maxformer", "nope")}
    assert resolves("neurons", "Dynamics.charge") and resolves("kernels", "FusedSequence.apply")
    assert not resolves("maxformer", "nope") and not resolves("data", "EVENT_DTYPE")


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_cited_name_exists(page):
    missing = sorted(f"{module}.{name}" for module, name in citations(page.read_text()) if not resolves(module, name))
    assert not missing, f"{page.relative_to(ROOT)} cites names that do not exist: {missing}"


def test_readme_layout_lists_every_module():
    table = re.search(r"^\| file \| concept \|\n(?:^\|.*\n)+", (ROOT / "README.md").read_text(), flags=re.M).group(0)
    listed = set(re.findall(r"`(\w+)\.py`", table))
    assert listed == set(MODULES), f"README layout: missing {sorted(set(MODULES) - listed)}, extra {sorted(listed - set(MODULES))}"

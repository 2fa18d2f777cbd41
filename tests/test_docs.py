"""The documentation cannot go stale: generated parts are regenerated and compared, every measured
number in the prose is the one in docs/results.json, every ```python block in README.md and docs/
runs (blocks of one page share one namespace, in order, like a notebook), and the tutorial notebook
executes."""
import importlib.util
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_PAGE = ROOT / "docs" / "tutorial.md"  # its blocks run as docs/tutorial.ipynb, below
PAGES = sorted(p for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")]
               if "```python" in p.read_text() and p != NOTEBOOK_PAGE)


def generate_module():
    spec = importlib.util.spec_from_file_location("generate", ROOT / "docs" / "generate.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_generated_docs_are_current():
    """docs/shapes.md, the code map in docs/architecture.md, every marked number in README.md and
    docs/*.md, and docs/tutorial.ipynb equal what `python docs/generate.py` makes of the code and
    docs/results.json today."""
    result = subprocess.run([sys.executable, "docs/generate.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


def test_a_number_that_disagrees_with_the_record_is_rewritten():
    generate = generate_module()
    record = {"training": {"run": {"best_acc1": 97.5}}}
    text = "reached <!-- r:training/run/best_acc1:.2f -->97.78<!-- /r --> %"
    assert generate.with_results(text, record) == "reached <!-- r:training/run/best_acc1:.2f -->97.50<!-- /r --> %"
    with pytest.raises(SystemExit, match="no result 'training/other'"):
        generate.with_results("<!-- r:training/other:.2f -->1<!-- /r -->", record)


def test_prose_quotes_the_record():
    """Marked numbers exist in the pages that quote measurements (so the check above has teeth)."""
    generate = generate_module()
    marked = {p.name: len(generate.MARK.findall(p.read_text()))
              for p in [ROOT / "README.md", ROOT / "docs" / "tutorial.md", ROOT / "docs" / "analysis.md"]}
    assert all(n > 0 for n in marked.values()), marked


@pytest.mark.slow
@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_in_docs_run(page, tmp_path):
    """Each page's python blocks run top to bottom in a fresh interpreter (working directory: a
    temporary folder, so files they write do not land in the repository)."""
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    script = tmp_path / f"doc_{page.stem}.py"  # not events.py: a script shadows the module of its name
    script.write_text("\n".join(blocks))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, f"{page.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"


@pytest.mark.slow
def test_tutorial_notebook_executes(tmp_path, monkeypatch):
    """docs/tutorial.ipynb runs top to bottom in a Jupyter kernel, in a temporary folder."""
    import nbclient
    import nbformat
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    nb = nbformat.read(ROOT / "docs" / "tutorial.ipynb", as_version=4)
    nbclient.NotebookClient(nb, timeout=600, kernel_name="python3",
                            resources={"metadata": {"path": str(tmp_path)}}).execute()
    outputs = "".join(o.get("text", "") for c in nb.cells if c.cell_type == "code" for o in c.outputs)
    assert "SNN:" in outputs and "high-frequency share" in outputs

"""The documentation cannot go stale: generated parts are regenerated and compared, and every
```python block in README.md and docs/ runs (blocks of one page share one namespace, in order, like a notebook)."""
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PAGES = sorted(p for p in [ROOT / "README.md", *(ROOT / "docs").glob("*.md")] if "```python" in p.read_text())


def test_generated_docs_are_current():
    """docs/shapes.md and the code map in docs/architecture.md equal what `python docs/generate.py`
    generates from the code today."""
    result = subprocess.run([sys.executable, "docs/generate.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_python_blocks_in_docs_run(page, tmp_path):
    """Each page's python blocks run top to bottom in a fresh interpreter (working directory: a
    temporary folder, so files they write do not land in the repository)."""
    blocks = re.findall(r"```python\n(.*?)```", page.read_text(), flags=re.S)
    script = tmp_path / f"{page.stem}.py"
    script.write_text("\n".join(blocks))
    env = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "MPLBACKEND": "Agg", "HOME": str(tmp_path)}
    result = subprocess.run([sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True,
                            timeout=600, env=env)
    assert result.returncode == 0, f"{page.name} failed:\n{result.stdout[-2000:]}\n{result.stderr[-4000:]}"

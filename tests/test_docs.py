"""The documentation cannot go stale: generated tables are regenerated and compared."""
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_shape_tables_are_current():
    """docs/shapes.md equals what `python docs/make_shapes.py` generates from the code today."""
    result = subprocess.run([sys.executable, "docs/make_shapes.py", "--check"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr

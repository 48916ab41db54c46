import os
import shutil
import subprocess
import sys

import cypoe


def test_import_without_compiled_modules_says_how_to_build(tmp_path):
    pkg = os.path.dirname(cypoe.__file__)
    dst = tmp_path / "cypoe"
    shutil.copytree(pkg, dst, ignore=shutil.ignore_patterns("*.so", "*.pyd", "__pycache__"))
    proc = subprocess.run([sys.executable, "-c", "import cypoe"], cwd=tmp_path,
                          capture_output=True, text=True,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert proc.returncode != 0
    assert "ImportError" in proc.stderr
    assert "pip install" in proc.stderr and "build_ext" in proc.stderr

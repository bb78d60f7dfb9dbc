"""Prints the project's Python dependencies (runtime and dev), one per line, from pyproject.toml.

The Makefile installs them into .venv before maturin builds the extension, so the
dependency list lives in exactly one place.
"""

import sys
import tomllib
from pathlib import Path

project = tomllib.loads(Path(sys.argv[1] if len(sys.argv) > 1 else "pyproject.toml").read_text())
dependencies = list(project["project"]["dependencies"])
for extra in project["project"].get("optional-dependencies", {}).values():
    dependencies.extend(extra)
print("\n".join(dependencies))

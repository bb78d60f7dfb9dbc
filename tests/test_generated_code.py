"""The checked-in protobuf code must be what scripts/gen_protos.sh makes from protos/."""

import subprocess
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_generated_code_matches_protos() -> None:
    result = subprocess.run(
        [str(ROOT / "scripts" / "gen_protos.sh"), "--check"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr

"""The original OpenAI Glow's own numbers: ../shared/golden/check_golden.py must exit 0."""
import os
import subprocess
import sys

import pytest

from conftest import GOLDEN_DIR, GOLDEN_SKIP_REASON, REPO_ROOT


@pytest.mark.skipif(not os.path.isdir(GOLDEN_DIR), reason=GOLDEN_SKIP_REASON)
def test_check_golden_exits_zero():
    script = os.path.join(GOLDEN_DIR, "check_golden.py")
    result = subprocess.run([sys.executable, script], cwd=REPO_ROOT, capture_output=True, text=True, timeout=600)
    report = result.stdout + result.stderr[-3000:]
    assert result.returncode == 0, report
    assert "golden fixtures agree with the original" in result.stdout, report
    assert "FAIL" not in result.stdout, report

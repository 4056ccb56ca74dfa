"""README.md is a user's guide: it starts with the two set-up commands, stays short, keeps its
measurements in benchmarks/RESULTS.md, and every file it shows or links exists."""
import os
import re

from conftest import REPO_ROOT

with open(os.path.join(REPO_ROOT, "README.md")) as f:
    README = f.read()


def test_the_readme_starts_with_the_two_commands_and_stays_short():
    first = README.split("```")[1].split()
    assert first[:2] == ["make", "demo"] and "make" in first and first[first.index("test") - 1] == "make"
    assert len(README.splitlines()) <= 300


def test_every_picture_and_link_of_the_readme_exists():
    targets = re.findall(r'<img src="([^"]+)"|\]\(([\w./-]+\.\w+)\)', README)  # pictures and file links
    paths = {path for group in targets for path in group if path}
    assert "benchmarks/RESULTS.md" in paths and "docs/demo_samples.png" in paths
    missing = [path for path in paths if not os.path.exists(os.path.join(REPO_ROOT, path))]
    assert not missing


def test_no_commit_stamped_measurement_in_the_readme():
    assert not re.findall(r"\b(?:at|measured at|commit) [0-9a-f]{7}\b", README)

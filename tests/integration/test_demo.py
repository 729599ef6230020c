"""The README's demo command tells its story correctly (run as the README runs it)."""
import subprocess
import sys
from pathlib import Path

TOP = Path(__file__).resolve().parents[2]


def test_demo_story_runs_and_shows_the_conflict():
    out = subprocess.run([sys.executable, "-m", "demo.story"], cwd=TOP, capture_output=True,
                         text=True, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    text = out.stdout
    assert "registered on 2/2 paths" in text
    assert "reserved WE-RO" in text
    assert "WRITE(10) LBA 100: RESERVATION CONFLICT" in text
    assert "node2 is fenced off the disk" in text
    assert "demo finished: every step behaved as expected" in text

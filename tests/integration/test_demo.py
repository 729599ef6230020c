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
    part2 = text[text.index("# Part 2"):]
    assert "HAMN950-I" in part2
    partial = part2[part2.index("== 2."):part2.index("== 3.")]
    assert "KAMN725-W" in partial and "KAMN726-E" not in partial
    assert "hamon_disk stop on node1: exit 0" in partial
    total = part2[part2.index("== 3."):part2.index("== 4.")]
    assert "KAMN725-W" in total and "KAMN726-E" in total and "HAMN954-E" in total
    assert "OS termination requested (dry run): reboot" in total
    recover = part2[part2.index("== 4."):]
    assert "Step 4. Cancel the reservation  [TO DO]" in recover
    assert "demo finished: every step behaved as expected" in text

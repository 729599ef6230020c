"""No registration pile-up on LIO over 100 fence cycles (scenarios/pileup_lio.py);
the same on tgtd is tests/integration/test_fence_tgt.py."""
from __future__ import annotations

import pytest
from vm import SCENARIOS

pytestmark = pytest.mark.system


def test_no_pile_up_on_lio_after_100_fence_cycles(vm):
    r = vm(SCENARIOS / "pileup_lio.py", timeout=900)
    r.check()
    got = [line[3:] for line in r.stdout.splitlines() if line.startswith("OK ")]
    assert "100 cycles: node2 gone, node1 there after every cycle" in got, r.stdout
    assert any(line.startswith("100 cycles: node1's registrations") for line in got), \
        r.stdout
    print(r.summary())

#!/usr/bin/python3
"""The watchdog hook of the VM cluster tier, without a watchdog daemon.

fence_scsi's model reboots a fenced node from the watchdog daemon, which runs
fence_hamon_scsi_check every few seconds. The guests have no watchdog daemon, and one
Python start of the check costs ~5 s of the single vCPU under TCG, so this loop imports
the check once and calls the same entry point the script has (hamon.agents.fence.check.main)
every INTERVAL seconds, under the name fence_hamon_scsi_check_hardreboot: when it finds
this node's key gone from every device that answers, it reboots the node itself (SysRq b,
which ends the guest's QEMU: -no-reboot). Every verdict is appended to /hamon/watchdog.log.
"""
from __future__ import annotations

import sys
import time

from hamon.agents.fence import check as fence_check


def main() -> int:
    interval = float(sys.argv[1]) if len(sys.argv) > 1 else 2.0
    with open("/hamon/watchdog.log", "a", buffering=1) as log:
        while True:
            rc = fence_check.main(["fence_hamon_scsi_check_hardreboot", "test"])
            log.write(f"{time.monotonic():.2f} check rc={rc}\n")
            time.sleep(interval)


if __name__ == "__main__":
    sys.exit(main())

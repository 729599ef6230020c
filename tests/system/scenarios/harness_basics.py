#!/usr/bin/env python3
"""Harness self-check (test_vm_smoke.py): args and env arrive, stdout/stderr/files and the
exit status come back, a Python scenario can use guest/storage.py."""

import os
import sys

sys.path.insert(0, os.environ["HAMON_GUEST"])
import storage

storage.step("python-scenario")
print("args", sys.argv[1:])
print("env", os.environ.get("HAMON_TEST_VALUE"))
print("cwd", os.getcwd())
print("kernel", os.uname().release)
print("to stderr", file=sys.stderr)
with open("left-for-host.txt", "w") as fh:
    fh.write("hello host\n")
sys.exit(int(os.environ.get("HAMON_TEST_EXIT", "0")))

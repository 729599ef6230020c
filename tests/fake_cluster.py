"""A cluster's word, for a ``hamon`` run as its own process: ``crm_node``, ``crm_mon`` and
``cibadmin`` scripts put first on PATH, answering what the test says.

Why: ``hamon reservation cancel`` and ``monscsiclr`` ask the cluster who is alive and
which hamon_disk resources run here (hamon.lib.cluster, through PATH like any tool).
A test that runs the real command in a separate process injects that answer here,
where a unit test monkeypatches hamon.lib.cluster; the command itself has no test hook.
The CIB is absent (``cibadmin`` fails as with no cluster): no node_keys, no resources.
"""
from __future__ import annotations

import os
import shlex
from collections.abc import Iterable, Mapping
from pathlib import Path
from xml.sax.saxutils import quoteattr


def _script(path: Path, body: str) -> None:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(0o755)


def fake_cluster(directory: Path, online: Iterable[str], *, node: str,
                 offline: Iterable[str] = (), here: Iterable[str] = (),
                 quorate: bool = True, env: Mapping[str, str] | None = None
                 ) -> dict[str, str]:
    """Write the tools into ``directory``; the environment to run ``hamon`` with.

    ``online``/``offline``: the nodes ``crm_node -l`` lists as member/lost; ``here``: the
    hamon_disk resources ``crm_mon`` shows active on ``node``.
    """
    directory.mkdir(parents=True, exist_ok=True)
    online, offline, here = list(online), list(offline), list(here)
    listing = "".join(f"{i} {n} {'member' if n in online else 'lost'}\n"
                      for i, n in enumerate(online + offline, 1))
    nodes = "".join(f"<node name={quoteattr(n)} online=\"{str(n in online).lower()}\" "
                    "type=\"member\"/>" for n in online + offline)
    resources = "".join(f"<resource id={quoteattr(r)} resource_agent=\"ocf:hamon:hamon_disk\""
                        f" active=\"true\"><node name={quoteattr(node)}/></resource>"
                        for r in here)
    xml = (f"<pacemaker-result><summary><current_dc with_quorum=\"{str(quorate).lower()}\"/>"
           f"</summary><nodes>{nodes}</nodes><resources>{resources}</resources>"
           "</pacemaker-result>\n")
    _script(directory / "crm_node", f"""case "$1" in
  -l) printf %s {shlex.quote(listing)} ;;
  -q) echo {1 if quorate else 0} ;;
  -n) echo {shlex.quote(node)} ;;
  *) exit 1 ;;
esac
""")
    _script(directory / "crm_mon", f"printf %s {shlex.quote(xml)}\n")
    _script(directory / "cibadmin", "echo 'Could not connect to the CIB: "
                                    "Transport endpoint is not connected' >&2\nexit 102\n")
    base = dict(os.environ if env is None else env)
    base["PATH"] = f"{directory}{os.pathsep}{base.get('PATH', '/usr/bin:/bin')}"
    return base

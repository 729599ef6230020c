"""``ocf:hamon:hamon_disk`` on resource-agents' ``ocf.py``: the handler table and main.

resource-agents ships its Python library at ``$OCF_ROOT/lib/heartbeat/ocf.py`` (Debian:
``/usr/lib/ocf/lib/heartbeat``), outside every Python path; its own Python agents add
``$OCF_FUNCTIONS_DIR`` (default ``$OCF_ROOT/lib/heartbeat``) to ``sys.path`` and import
it, and so does :func:`~.metadata.load_ocf`. What the library does here, as in its own
agents (``dummypy``): the metadata XML (``Agent.to_xml``), the action dispatch
(``run``), and exit reasons (``ocf_exit_reason``). Each action is a plain function of a
:class:`~.context.DiskAgent` (:data:`HANDLERS`); this module only maps OCF's environment
onto settings and one context, and the outcome back onto an exit code and reason. Its
exit constants stop at 9: DEGRADED (190) comes from :mod:`hamon.lib.pacemaker`.
"""
from __future__ import annotations

import os
import sys
from collections.abc import Callable
from types import ModuleType

from hamon.lib.pacemaker import ocf_call
from hamon.lib.pacemaker.ocf_call import ExitStatus

from .context import DiskAgent
from .metadata import AGENT_NAME, PARAMETERS, build_agent, load_ocf
from .monitor import monitor
from .settings import HIDDEN_PARAMETERS, ConfigError, parse_settings, state_dir
from .start import start
from .state import State
from .stop import stop
from .validate import check_devices, validate


def _start(agent: DiskAgent) -> int:
    # a name that is not a shared disk here: OCF_ERR_INSTALLED, never a retry
    return check_devices(agent, missing_ok=True) or start(agent)


def _monitor(agent: DiskAgent) -> int:
    return monitor(agent, probe=ocf_call.is_probe("monitor", agent.env))


#: Each action Pacemaker may ask for, as a function of one action's context.
HANDLERS: dict[str, Callable[[DiskAgent], int]] = {
    "start": _start,
    "stop": stop,
    "monitor": _monitor,
    "validate-all": validate,
}


def _params(ocf: ModuleType) -> dict[str, str | None]:
    names = [name for name, *_ in PARAMETERS] + list(HIDDEN_PARAMETERS)
    return {name: ocf.get_parameter(name) for name in names}


def handle(action: str, ocf: ModuleType, env: dict[str, str] | None = None) -> int:
    """Run one action from the OCF environment; returns the exit code."""
    env = dict(os.environ) if env is None else env
    params = _params(ocf)
    try:
        settings = parse_settings(params, env)
    except ConfigError as err:
        return _config_error(action, str(err), params, env, ocf)
    handler = HANDLERS.get(action)
    if handler is None:
        return int(ExitStatus.ERR_UNIMPLEMENTED)
    agent = DiskAgent(settings, env=env)
    try:
        rc = handler(agent)
    except ConfigError as err:
        ocf.ocf_exit_reason(str(err))
        return int(ExitStatus.ERR_CONFIGURED)
    if agent.reason and rc != ExitStatus.SUCCESS:
        ocf.ocf_exit_reason(agent.reason)
    return rc


def _config_error(action: str, why: str, params: dict[str, str | None],
                  env: dict[str, str], ocf: ModuleType) -> int:
    """Parameters that cannot work. A probe says "not running" (it cannot be running
    with them), a stop succeeds unless a start was begun here (nothing of ours can be on
    the disk), everything else is OCF_ERR_CONFIGURED."""
    if action == "monitor" and ocf_call.is_probe(action, env):
        return int(ExitStatus.NOT_RUNNING)
    if action == "stop":
        resource = env.get("OCF_RESOURCE_INSTANCE") or AGENT_NAME
        if not State(state_dir(params, env), resource).load().get("active"):
            return int(ExitStatus.SUCCESS)
    ocf.ocf_exit_reason(why)
    return int(ExitStatus.ERR_CONFIGURED)


def main() -> None:
    """The agent's entry point (``agents/ocf/hamon_disk``); does not return."""
    try:
        ocf = load_ocf()
    except ImportError as err:
        print(f"ocf-exit-reason:resource-agents' ocf.py not found ({err}); install "
              "resource-agents or set OCF_FUNCTIONS_DIR", file=sys.stderr)
        sys.exit(int(ExitStatus.ERR_INSTALLED))
    ocf.run(build_agent(ocf), {a: _handler(a, ocf) for a in HANDLERS})


def _handler(action: str, ocf: ModuleType) -> Callable[[], int]:
    """A handler without arguments: ocf.run passes each argument of a handler the
    parameter of that name, so a handler must not have any but its own."""

    def run_action() -> int:
        return handle(action, ocf)

    return run_action

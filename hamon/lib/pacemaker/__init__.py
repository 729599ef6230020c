"""What Pacemaker tells a resource agent, and what the agent tells Pacemaker back.

Each module reads or writes with a time bound (:mod:`hamon.lib.cluster`) so that no
cluster tool can hang an agent action: a stop that hangs on ``cibadmin`` is a stop that
times out, and a stop timeout is a fence.

* :mod:`.ocf_call`: the OCF exit codes (with OCF 1.1's DEGRADED) and what a call's
  environment says (probe, OCF version, run by Pacemaker or by hand);
* :mod:`.attributes`: transient node attributes that ``crm_mon -A`` shows;
* :mod:`.termination_kind`: whether a stop is a normal, planned or abnormal termination,
  inferred from the CIB (Pacemaker does not tell a primitive why it stops it).
"""

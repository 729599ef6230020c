"""``ocf:hamon:hamon_disk``: what the resource agent does to the shared disks, HA Monitor's rules.

The rooms: :mod:`.settings` (parameters -> :class:`~.settings.Settings`), :mod:`.state`
(the state file between actions), :mod:`.context` (one action's collaborators and shared
steps), the actions :mod:`.start`, :mod:`.stop`, :mod:`.monitor` (with :mod:`.probe`, a
failed path answering again) and :mod:`.validate`, and the resource-agents glue
:mod:`.metadata` and :mod:`.agent`. Every decision is in the actions, so unit tests drive
them on the in-memory target and the integration tier on tgtd, with no agent process in
between. This package imports nothing at import time: the entry script imports
:mod:`.agent`.

Who may write, and therefore who is registered
----------------------------------------------
HA Monitor lets only the active server write a shared disk. The default reservation type
is *Write Exclusive - Registrants Only* (WE-RO, 5), because it is the only family that
works with multipath: SPC-4 registrations are per I_T nexus, so every path of the active
node registers the key, and with WE-RO every registered nexus may write; plain WE/EA let
only the one nexus that reserved write, so a multipath failover would meet RESERVATION
CONFLICT. The price of WE-RO is that *any* registrant may write. hamon_disk therefore
keeps exactly one node registered, the active one:

* start registers this node's key through every path that answers, reserves, and when
  another key holds the reservation preempts it (the standby forcibly obtains the disk,
  HAMN951-W, as HA Monitor's standby does on a switchover); then it removes every other
  key still registered (HAMN956-W), because each of them could write;
* stop releases the reservation and removes this node's key from every path, so a
  stopped node cannot write any more. When some paths are dead the key cannot be removed
  through them, so stop first PREEMPTs its own key through a live path: SPC-4 removes
  every other nexus registered with that key, the dead ones included, and moves the
  reservation onto the live nexus, which then releases and unregisters;
* the standby is not registered at all: its monitor (a probe) reports "not running".

Start preempts whatever other key holds the disk. It cannot know whether that node still
runs the service: Pacemaker stops the resource there first (or fences the node) before it
starts it here, and HA Monitor's standby preempts in the same situation. The victim's key,
and the node it belongs to when the cluster can say, are logged and journalled.

Failures (the seed's table, :mod:`hamon.lib.termination`)
---------------------------------------------------------
stop = the active server terminating: some paths of a disk failed -> KAMN725-W, the stop
completes (exit 0); every path of a disk failed -> KAMN725-W + KAMN726-E, the journal
entry is made durable, the OS is terminated (``os_termination``). start = the standby
switching over: every path of a disk failed -> KAMN725-W + KAMN726-E and start fails.
monitor = the running server's periodic check: some paths failed -> degraded, every path
-> failure; a failed path that answers again -> KAMN727-I ONLINE_CHECK, and when it lost
the key, ONLINE_CHECK(NO_KEY) and the key is registered on it again. A probe or a monitor
on a node that does not hold the disk is the standby (§7.5.9): messages only, never a
termination, never a change on the disk.
"""

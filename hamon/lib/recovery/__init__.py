"""HA Monitor's recovery procedure after a shared-disk failure, as data.

The seed (HA Monitor manual §7.5.8) prescribes four steps after a disk failure terminated
the active server's OS:

1. determine the cause (KAMN725-W / KAMN726-E, the kernel's messages, hardware tools);
2. resolve it (replace the device...); in a multipath configuration do *not* fail back yet;
3. in a multipath configuration fail the recovered path back with the multipath software
   (HDLM, DMMP); not for a single path, nor where no DMMP is used (VMware ESXi);
4. cancel the reservation if the failure hit a *normal* termination; after a planned or
   abnormal termination the standby forcibly obtained the reservation, nothing to cancel.

Which steps apply depends on three things, and on nothing else: the journal entry that
``hamon.lib.termination.act`` made durable before the OS went down (phase, termination
kind, failed paths), the state of the paths and the reservation *now*, and the multipath
software in use. One module per part, so the decision stays apart from the reading:

* :mod:`.selection`: which journal entry the recovery is about (pure);
* :mod:`.observed`: the disks as read now, as plain data (and a key's owner, named);
* :mod:`.steps`: each of the four steps decided over that data (pure);
* :mod:`.plan`: :func:`~hamon.lib.recovery.plan.build` puts the steps together into a
  :class:`~hamon.lib.recovery.plan.Plan` without touching a device, so every branch is
  testable with plain data;
* :mod:`.kernel_log`: the kernel's lines about the failed devices (the one impure part,
  bounded).

The ``hamon recover`` command gathers the inputs and prints or runs the plan.

Trust: a torn or damaged journal line is never read as an entry (see
:mod:`hamon.lib.journal`). When such a line is *newer* than the last intact failure
entry, it may be the record of the very failure being recovered from, so the termination
kind is then treated as unknown and step 4 says what to check instead of guessing:
cancelling a reservation that the standby legitimately took over would be the one
harmful mistake in this procedure.
"""

"""``hamon check-disk``: is this storage fit for hamon's fencing? One module per job.

* :mod:`.verdict`: what each observed answer means, and the verdict (pure);
* :mod:`.nexus`: the two I_T nexuses of this node the check sends through;
* :mod:`.run`: the commands, in order, and the restore of everything the check changed;
* :mod:`.check`: one disk's check (its refusals, the run, the judgement) and the
  operands the CLI passes;
* :mod:`.report`: what one disk's check found, as text and as data.
"""

"""fence_hamon_scsi and its watchdog hook fence_hamon_scsi_check, one room per job.

    options   the option table, defaults and docs fencing.py shows (imports nothing)
    errors    FenceError, ConfigError, exit codes (imports nothing)
    agent     the process: fencing.py's flow, the time bound, the fast exit
    actions   fencing.py's callbacks (conn, options), validate-all; the engine's door
    settings  options -> validated Settings, Node
    fencer    unfence, fence (the arbiter rule), status, monitor, registrants
    outcome   what the disks said: states, reports, one-line reasons
    state     the file ``on`` writes and the watchdog hook reads
    check     the watchdog hook

Nothing is imported here: ``-o metadata`` loads options and agent only.
"""

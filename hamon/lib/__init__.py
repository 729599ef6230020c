"""The engine: SCSI persistent reservations over every path of a shared disk. No cluster code."""

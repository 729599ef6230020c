"""hamon: HA Monitor shared-disk protection for Pacemaker."""

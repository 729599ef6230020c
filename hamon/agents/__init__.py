"""The agents Pacemaker runs: one package per agent, on the library in hamon.lib."""

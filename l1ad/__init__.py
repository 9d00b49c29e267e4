"""l1ad: the command line, typed configuration and end-to-end pipeline that join trigger, firmware, sim and offline."""
__version__ = "0.1.0"

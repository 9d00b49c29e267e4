"""One module per CLI stage; each exposes a click command or group named `command`."""

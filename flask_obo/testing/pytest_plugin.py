"""pytest plugin for the Entra emulator (work in progress)."""

"""Offline Microsoft Entra ID emulator (work in progress)."""

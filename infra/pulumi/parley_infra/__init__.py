"""Parley's Pulumi program: one ComponentResource per subsystem, wired together in program.py."""

"""Clients of the control plane for agents and scripts (see clients/README.md)."""

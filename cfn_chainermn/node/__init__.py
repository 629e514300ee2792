"""The node agent: what runs on every cluster node at boot and on a timer (see agent.py)."""

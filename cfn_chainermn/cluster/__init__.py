"""A running cluster: NAME to a handle, its live nodes, hostfile, SSH with pinned keys, checks."""

"""The cluster's settings: the model loaded from cluster.yaml and flags, its validation, its template parameters."""

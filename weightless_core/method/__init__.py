"""The method: prune, cluster, encode layer by layer and retrain around the errors (Algorithm 1)."""

"""Bytes and results: the content-addressed object store, the run cache, the lock
file, remotes, the clones sharing a store."""

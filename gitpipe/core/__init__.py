"""What every layer may use: typed errors, atomic writes, digests, file stamps and
the status snapshot, the parsed-file cache.  Imports nothing else of gitpipe."""

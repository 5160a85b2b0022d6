"""Git: the repository layer, versions from history, diffs between commits, and
the garbage collection that reads every lock Git holds."""

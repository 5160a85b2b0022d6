"""Git: the repository layer (git), versions from history (shape of a pipeline at a
commit, the version rules, the first-parent walk and its cache, the versions asked
for), diffs between commits, and the garbage collection that reads every lock Git
holds."""

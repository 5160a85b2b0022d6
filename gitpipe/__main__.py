"""`python -m gitpipe ...`: the same as the `gitpipe` console script."""

from gitpipe.cli import main

main()

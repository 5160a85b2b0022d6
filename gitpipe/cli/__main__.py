"""`python -m gitpipe.cli ...`: the same as the `gitpipe` console script."""

from gitpipe.cli import main

main()

from gitpipe.cli import main

main()

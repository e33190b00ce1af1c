from lsqsync.cli import main

main()

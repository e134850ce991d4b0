from aggserver.cli import main

main()

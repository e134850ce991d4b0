from mockex.cli import main

main()

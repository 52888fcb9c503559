from gluebench.cli import main

main()

from callwarden.cli import main

main()

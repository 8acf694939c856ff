from roofplan.cli.app import main

main()

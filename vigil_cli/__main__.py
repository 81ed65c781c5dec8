from vigil_cli.main import main

main()

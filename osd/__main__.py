from osd.cli.app import main

main()

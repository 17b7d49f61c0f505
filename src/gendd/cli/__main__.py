from gendd.cli import main

main()

from baoke.cli import main

main()

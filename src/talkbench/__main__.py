from talkbench.cli import main

main()

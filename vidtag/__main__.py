from vidtag._cli import main

main()

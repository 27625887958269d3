from gridtrial.runner import main

main()

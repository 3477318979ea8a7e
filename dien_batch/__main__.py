from dien_batch.cli import main

main()

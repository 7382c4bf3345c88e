"""`python -m flowtok_cli …` (used by torchrun) runs the same app as `flowtok …`."""

from flowtok_cli.app import main

main()

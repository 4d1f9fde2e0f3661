"""The ``meshclient`` command line (entry point ``meshclient.cli.main:main``); one module per subcommand."""

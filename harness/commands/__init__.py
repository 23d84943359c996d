"""One module per subcommand (``harness.cli.COMMANDS``): DESCRIPTION, EPILOG,
add_arguments(parser) and main(args, parser), with its run, render and figures;
``options`` holds what they share."""

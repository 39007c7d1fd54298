"""Command line: parses options, loads the config, calls one pipeline function, renders the result."""

"""Command line: parses options, calls one method of osd.Project (the Python API), renders the result."""

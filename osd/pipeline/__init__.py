"""One function per step: read inputs through artifacts, call the library, write outputs, return a result."""

"""The `sfu` command line: a thin layer over the library."""

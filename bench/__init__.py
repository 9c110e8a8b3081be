"""Benchmarks and chaos runs: scripts that start what they need, print a table of numbers, and
exit non-zero when a target is missed. Not tests: run them by hand or in a nightly job."""

"""Prefect flows, tasks and the command line: orchestration only, the rules live in `stroppy_domain`."""

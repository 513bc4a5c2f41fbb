"""The pure domain of stroppy-flows: what a suite is, how it is validated and where every service goes.

Nothing in this package performs I/O; every input arrives as an argument (text, settings, a password
generator), so every rule here is testable with plain tables.
"""

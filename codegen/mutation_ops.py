"""The names of ``kgen mutate``'s operators, apart from the enumerator (codegen/mutate.py), so
that the command line can offer them without importing it."""

OPERATORS = ("relational", "logical", "arithmetic", "constant", "boolean", "negate", "delete",
             "swap-args", "constraint", "byte")  # fmt: skip

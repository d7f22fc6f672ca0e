"""The machines the mirror models: their size limits, known without importing the mirror.

The command line declares its options with them; the mirror (codegen.mirror) enforces them.
"""

PAGE_SHIFT = 12
# What the mirror simulates, so that every run ends in bounded time and memory.
PHYS_BITS = 52  # x86-64's architectural limit of physical addresses
MAX_CPUS = 4096

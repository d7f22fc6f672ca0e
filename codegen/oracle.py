"""The model of an instruction whose effect the mirror does not simulate.

RMPOPT has a table the mirror keeps (:mod:`codegen.mirror`).  PVALIDATE,
RMPADJUST, RMPUPDATE, PSMASH and RMPREAD act on RMP state that no kernel
helper reads back, so what matters about their helpers is how they pass
arguments and what they make of the outputs.  Here the outputs are a fixed
function of the inputs, chosen so that every path of a helper comes up:
success, each listed return code, arbitrary values in the return register,
each output flag, and retry codes, at most :data:`RETRY_STREAK` times in a
row so that a bounded retry loop always ends.

The trap harness (codegen/harness/core.c) computes the same function in C.
From the spec alone, :func:`call` gives what one call of the low-level
helper must do: each execution's registers and outputs, and the value the
helper returns.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from .model import OPERAND_BITS, Input, PointerOperand, Spec

MASK64 = (1 << 64) - 1
RETRY_STREAK = 3
FLAG_BITS = {"cf": 0, "pf": 2, "zf": 6, "sf": 7, "of": 11}
# what the trap handler reads and writes, by the letter core.c's spec line names each with;
# the harness's own table: never the templates' asm constraint letters, or a wrong letter
# there would put an operand in the wrong register on both sides of the comparison
HARNESS_REGISTER_LETTER = {"rax": "a", "rcx": "c", "rdx": "d"}
HARNESS_REGISTERS = tuple(HARNESS_REGISTER_LETTER)
ACCESS_LETTER = {"read": "r", "write": "w", "read-write": "b"}


def uses_oracle(spec: Spec) -> bool:
    """Whether compare models ``spec`` with the oracle (no table to simulate)."""
    insn = spec.instruction
    return insn.table is None or insn.function_codes is None


def harness_limit(spec: Spec) -> str | None:
    """Why the harness cannot run ``spec``'s helper, or None."""
    if not uses_oracle(spec):
        return None
    for i in spec.instruction.inputs:
        if i.register not in HARNESS_REGISTERS:
            return f"input {i.name} is in {i.register.upper()}; the harness passes RAX, RCX and RDX"
    for o in spec.instruction.outputs:
        if o.register and o.register != "rax":
            return f"output {o.name} is in {o.register.upper()}; the harness returns RAX"
    if sum(i.type == "pointer" for i in spec.instruction.inputs) > 1:
        return "more than one pointer operand"
    return None


def mix(x: int) -> int:
    """splitmix64's finalizer, as core.c's mix()."""
    x = (x + 0x9E3779B97F4A7C15) & MASK64
    x = ((x ^ (x >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    x = ((x ^ (x >> 27)) * 0x94D049BB133111EB) & MASK64
    return x ^ (x >> 31)


def stream(seed: int, count: int) -> bytes:
    """``count`` bytes drawn from ``seed``: how the harness fills pointer memory (byte i is
    byte i % 8 of mix(seed + i // 8), little-endian: a word at a time)."""
    words = (mix((seed + k) & MASK64).to_bytes(8, "little") for k in range((count + 7) // 8))
    return b"".join(words)[:count]


def memory_hash(data: bytes) -> int:
    h = 0
    for at in range(0, len(data), 8):
        h = mix(h ^ int.from_bytes(data[at : at + 8], "little"))
    return h


def operand_bits(i: Input) -> int:
    """The register bits the helper's C operand defines; the trace shows only these."""
    return OPERAND_BITS.get(i.type, 64)


def parameter_value(i: Input, arg: int) -> int:
    """The defined bits of the register, once ``arg`` is converted to the parameter's C type."""
    if i.type == "bool":
        return int(arg != 0)
    return arg & ((1 << operand_bits(i)) - 1)


def return_value(spec: Spec, rax: int, flags: int) -> int:
    """The helper's result, converted to u64 as the harness's call wrapper does."""
    insn = spec.instruction
    for o in insn.outputs:
        if o.flag and o.software_code and flags >> FLAG_BITS[o.required_flag] & 1:
            return o.software_code.value
    rc = insn.return_output()
    if rc is None:
        flag = next((o for o in insn.outputs if o.flag), None)
        return flags >> FLAG_BITS[flag.required_flag] & 1 if flag else 0
    if rc.type == "int":
        low = rax & 0xFFFF_FFFF
        return (low - (1 << 32) if low >> 31 else low) & MASK64
    if rc.type == "bool":
        return int(rax & 0xFF != 0)
    return rax


@dataclass
class Oracle:
    """The outputs of one case's executions; remembers the run of equal inputs."""

    spec: Spec
    stuck: bool = False  # a retry code comes back for the same inputs: a retry bound runs out
    last: int | None = None
    last_rax: int = 0
    streak: int = 0
    returns_rax: bool = field(init=False)
    codes: tuple[int, ...] = field(init=False)  # listed return codes, retry codes among them
    retry: tuple[int, ...] = field(init=False)
    flag_mask: int = field(init=False)  # RFLAGS bits of the output flags

    def __post_init__(self) -> None:
        insn = self.spec.instruction
        rc = insn.return_output()
        self.returns_rax = rc is not None
        self.codes = tuple(c.value for c in rc.codes) if rc else ()
        self.retry = tuple(c.value for c in rc.codes if c.retry) if rc else ()
        self.flag_mask = sum(1 << FLAG_BITS[o.flag] for o in insn.outputs if o.flag)

    def execute(self, values: list[int], memory: bytes | None) -> tuple[int, int, bytes | None]:
        """(RAX, output flags, memory after) for inputs ``values`` (a pointer by its hash)."""
        key = 0
        for v in values:
            key = mix(key ^ v)
        self.streak = self.streak + 1 if self.last == key else 0
        self.last = key
        h = mix(key ^ mix(self.streak))
        rax = 0
        if self.returns_rax:
            pick = h % 8
            if pick in (4, 5):
                rax = self.codes[mix(h) % len(self.codes)] if self.codes else 0
            elif pick == 6:
                rax = mix(h ^ 1)
            elif pick == 7:
                rax = (h >> 8) & 0xFF
            if self.stuck and self.streak and self.last_rax in self.retry:
                rax = self.last_rax
            elif rax in self.retry and self.streak >= RETRY_STREAK and not self.stuck:
                rax = 0
        self.last_rax = rax
        flags = self.flag_mask & mix(h ^ 2) & mix(h ^ 3)
        if memory is not None:
            memory = stream(h ^ 4, len(memory))
        return rax, flags, memory


def pointer_input(spec: Spec) -> PointerOperand | None:
    return spec.instruction.pointer_operand()


def call(spec: Spec, oracle: Oracle, cpu: int, args: list[int]) -> tuple[list[str], int]:
    """The trace lines of one call of the low-level helper, and its result."""
    insn, raw = spec.instruction, spec.kernel.raw_helper
    ptr = pointer_input(spec)
    pin = ptr.input if ptr else None
    memory: bytes | None = None
    values, shown = [], []
    for i, arg in zip(insn.inputs, args, strict=True):
        if ptr is not None and i is pin:
            memory = stream(arg, ptr.bytes)
            values.append(memory_hash(memory))
            shown.append("@" + memory.hex())
        else:
            v = parameter_value(i, arg)
            values.append(v)
            shown.append(f"{v:#x}")
    written = ptr is not None and ptr.access != "read"
    lines = []
    retries = 0
    while True:
        rax, flags, after = oracle.execute(values, memory)
        out = [f"{rax:#x}"] if oracle.returns_rax else []
        if oracle.flag_mask:
            out.append(f"f={flags:#x}")
        if written and after is not None:
            out.append("@" + after.hex())
        lines.append(f"R {cpu} " + " ".join(shown) + " = " + " ".join(out))
        if written and after is not None:  # a later execution sees what this one wrote
            memory = after
            values = [
                memory_hash(memory) if i is pin else v
                for i, v in zip(insn.inputs, values, strict=True)
            ]
            shown = [
                "@" + memory.hex() if i is pin else s
                for i, s in zip(insn.inputs, shown, strict=True)
            ]
        if rax in oracle.retry and raw.max_retries is not None and retries < raw.max_retries:
            retries += 1  # the asm statement runs again and loads its inputs again
            continue
        break
    return lines, return_value(spec, rax, flags)


def spec_fields(spec: Spec) -> list[str]:
    """The harness's spec-line fields that select and configure the oracle."""
    insn = spec.instruction
    fields = [
        "model=oracle",
        "in="
        + ",".join(f"{HARNESS_REGISTER_LETTER[i.register]}{operand_bits(i)}" for i in insn.inputs),
    ]
    ptr = pointer_input(spec)
    if ptr is not None:
        fields.append(
            f"ptr={HARNESS_REGISTER_LETTER[ptr.input.register]}:{ptr.bytes}:{ACCESS_LETTER[ptr.access]}"
        )
    model = Oracle(spec)
    if model.returns_rax:
        fields.append("rc=" + ",".join(f"{v:#x}" for v in model.codes))
    if model.retry:
        fields.append("retry=" + ",".join(f"{v:#x}" for v in model.retry))
    if model.flag_mask:
        fields.append(f"flags={model.flag_mask:#x}")
    return fields

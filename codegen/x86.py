"""What a spec's bytes are to an x86 CPU: the opcode maps' layout and a decoder's reading.

The loader (codegen.spec) holds an encoding to the layout of one instruction
with the tables here, then to what the iced-x86 decoder reads in 64-bit mode:
exactly one instruction of exactly the spec's length, or nothing the decoder
knows.  The engine choice (codegen.host) asks the same decoder whether the
bytes are an instruction that user mode may execute.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from functools import cache
from typing import Literal

from .record import record

MAX_LENGTH = 15  # bytes of one x86 instruction, at most
# The legacy prefixes the format allows: they select an instruction in the 0F maps
# (66/F2/F3 as mandatory prefixes) or lock it; segment overrides, 67 and REX change
# the operands of an instruction, which a .byte helper passes in fixed registers.
PREFIXES = {0x66: "operand-size", 0xF2: "REPNE", 0xF3: "REP", 0xF0: "LOCK"}
# F0, F2 and F3 form one prefix group: an instruction takes at most one of them
PREFIX_GROUP_1 = frozenset({0xF0, 0xF2, 0xF3})
# the opcode maps the format describes, by their escape bytes
ESCAPES = ((0x0F,), (0x0F, 0x38), (0x0F, 0x3A))
# opcodes of the 0F map that take no ModRM byte (syscall, sysret, wbinvd, ud2, wrmsr,
# rdtsc, rdmsr, rdpmc, sysenter, sysexit, getsec, emms, jcc rel32, push/pop fs/gs, cpuid,
# rsm, bswap); every other 0F opcode, and every opcode of 0F 38 and 0F 3A, takes one
NO_MODRM_0F = frozenset(
    [0x05, 0x06, 0x07, 0x08, 0x09, 0x0B, 0x0E, 0x30, 0x31, 0x32, 0x33, 0x34, 0x35, 0x37,
     0x77, 0xA0, 0xA1, 0xA2, 0xA8, 0xA9, 0xAA, *range(0x80, 0x90), *range(0xC8, 0xD0)]
)  # fmt: skip
IMMEDIATE_SIZES = (1, 2, 4)  # what an immediate of an instruction in the 0F maps can be


def hex_bytes(data: bytes | tuple[int, ...]) -> str:
    return " ".join(f"{b:02X}" for b in data)


def takes_modrm(escape: tuple[int, ...], opcode: int) -> bool:
    return escape != (0x0F,) or opcode not in NO_MODRM_0F


def modrm_problem(modrm: int) -> str | None:
    """Why ``modrm`` needs SIB or displacement bytes (which the format has no role for)."""
    mod, rm = modrm >> 6, modrm & 7
    if mod == 1:
        return "mod 01 needs an 8-bit displacement"
    if mod == 2:
        return "mod 10 needs a 32-bit displacement"
    if mod == 0 and rm == 4:
        return "mod 00, rm 100 needs a SIB byte"
    if mod == 0 and rm == 5:
        return "mod 00, rm 101 needs a 32-bit RIP-relative displacement"
    return None


@cache
def decoder_name() -> str:
    from importlib.metadata import version  # only when a message names the decoder

    return f"iced-x86 {version('iced-x86')}"


@record
class Decoded:
    """The decoder's reading of some bytes in 64-bit mode.

    ``status`` is ``instruction`` (a known instruction starts the bytes;
    ``length`` is its length, which may be shorter than the bytes),
    ``invalid`` (no instruction the decoder knows) or ``truncated`` (the
    bytes end inside an instruction; ``length`` is how long it is when zero
    bytes follow, 0 if even then it is invalid).
    """

    data: bytes
    status: Literal["instruction", "invalid", "truncated"]
    length: int
    mnemonic: str | None = None  # the decoder's name, lower case
    privileged: bool = False  # CPL 0 only (or IOPL): user mode faults
    ignored_prefixes: bytes = b""  # leading prefixes without which it decodes the same

    @property
    def exact(self) -> bool:
        """One known instruction of exactly these bytes."""
        return self.status == "instruction" and self.length == len(self.data)


@cache
def _names() -> tuple[dict[int, str], dict[int, str]]:
    import iced_x86

    def table(ns) -> dict[int, str]:
        return {v: k.lower() for k, v in vars(ns).items() if k.isupper() and isinstance(v, int)}

    return table(iced_x86.Mnemonic), table(iced_x86.Code)


def _first(data: bytes):
    import iced_x86

    decoder = iced_x86.Decoder(64, data, ip=0)
    insn = decoder.decode()
    return insn, decoder.last_error


_REMEMBER = ContextVar("decodes kept between runs", default=False)


@contextmanager
def remembered_decodes() -> Iterator[None]:
    """Within it, :func:`decode` keeps its readings through :mod:`codegen.loadcache` (keyed by
    the bytes, kgen's code and iced-x86's files), so that reading a spec whose bytes were read
    before does not import the decoder."""
    token = _REMEMBER.set(True)
    try:
        yield
    finally:
        _REMEMBER.reset(token)


def decode(data: bytes) -> Decoded:
    """What the decoder reads at the start of ``data`` in 64-bit mode."""
    data = bytes(data)
    if _REMEMBER.get():
        from .loadcache import remembered

        return remembered("decode", (data.hex(),), lambda: _decode(data), "decoded")
    return _decode(data)


@cache
def _decode(data: bytes) -> Decoded:
    import iced_x86

    insn, error = _first(data)
    if error == iced_x86.DecoderError.NO_MORE_BYTES:
        padded, _ = _first(data + bytes(MAX_LENGTH))
        return Decoded(data, "truncated", 0 if padded.is_invalid else padded.len,
                       None if padded.is_invalid else _names()[0][padded.mnemonic])  # fmt: skip
    if insn.is_invalid:
        return Decoded(data, "invalid", insn.len)
    mnemonics, _ = _names()
    n = 0
    while n < insn.len and data[n] in PREFIXES:
        n += 1
    ignored = b""
    if n:
        bare, bare_error = _first(data[n : insn.len])
        if not bare.is_invalid and bare_error == 0 and bare.code == insn.code:
            ignored = data[:n]
    return Decoded(data, "instruction", insn.len, mnemonics[insn.mnemonic], insn.is_privileged,
                   ignored)  # fmt: skip


def encoding_problem(data: bytes, mnemonic: str) -> tuple[int | None, str] | None:
    """Why the decoder disagrees that ``data`` is the one instruction ``mnemonic``.

    Returns (index of the byte at fault or None for the whole encoding, message),
    or None when the bytes are exactly one instruction or nothing the decoder knows.
    """
    d = decode(data)
    shown = hex_bytes(data)  # decoder_name() only in a message: its version lookup is slow
    if d.status == "truncated":
        what = (f"a {d.length}-byte {d.mnemonic} when zero bytes follow" if d.length
                else "longer, whatever follows")  # fmt: skip
        return None, (f"{decoder_name()} reads {shown} as the start of a longer instruction ({what}): "
                      "it would consume the bytes after the .byte line")  # fmt: skip
    if d.status == "instruction" and d.length < len(data):
        return d.length, (
            f"byte {d.length + 1} ({data[d.length]:#04x}) follows a whole instruction: "
            f"{decoder_name()} "
            f"decodes {hex_bytes(data[: d.length])} as {d.mnemonic}, and the rest would run as "
            "another instruction"
        )
    if d.status == "instruction" and d.mnemonic != mnemonic and not d.ignored_prefixes:
        what = "a privileged instruction" if d.privileged else "an instruction user mode may run"
        return None, (f"{decoder_name()} decodes {shown} as {d.mnemonic} ({what}), not {mnemonic}: "
                      "the bytes are a known instruction under another name")  # fmt: skip
    return None

"""The spec format: typed, frozen objects for one instruction and its kernel use.

Each dataclass is one mapping in the YAML file; each field is one key, with
the same name.  A field's type says what the key holds, and
``typing.Annotated`` adds the constraints (ranges, C identifiers, comment-safe
text, ...).  The loader (:mod:`codegen.spec`) and the published JSON Schema
(:mod:`codegen.jsonschema`) are both derived from these declarations, so the
format has exactly one definition.

The format describes the whole SEV-SNP instruction family, not RMPOPT alone:
inputs in any general register, pointer operands, return codes in RAX (with
retry codes), and flag outputs with their software meaning.
"""

from __future__ import annotations

import re
from dataclasses import field
from functools import cached_property
from typing import Annotated, Literal

from .diagnostics import Mark, quote
from .record import record

FORMAT_VERSION = 1


# --- C names and the character rules of text --------------------------------

C_KEYWORDS = frozenset(
    """
    auto break case char const continue default do double else enum extern float for goto if
    inline int long register restrict return short signed sizeof static struct switch typedef
    union unsigned void volatile while _Alignas _Alignof _Atomic _Bool _Complex _Generic
    _Imaginary _Noreturn _Static_assert _Thread_local asm typeof __asm__ __typeof__ __inline__
    __volatile__ __attribute__ __restrict__ __extension__ bool true false
    alignas alignof constexpr nullptr static_assert thread_local typeof_unqual _BitInt
    _Decimal32 _Decimal64 _Decimal128 _Pragma
    __asm __attribute __typeof __typeof_unqual __inline __volatile __restrict __const __signed
    __alignof __real __imag __complex __label__ __auto_type __thread __func__ __null
    __int128 __int128_t __uint128_t __float128 __float80 __fp16 __bf16 __ibm128 __seg_fs __seg_gs
    __declspec __cdecl __stdcall __fastcall __vectorcall __regcall
    """.split()
)
# Macros gcc and clang define for x86-64 Linux in GNU C mode (clang -dM -E), outside the
# reserved spellings below.
PREDEFINED = frozenset("linux unix __linux __unix __x86_64 __amd64 __k8".split())
# Families of the compilers' built-in functions (gcc and clang refuse to redefine them).
BUILTIN_PREFIXES = ("__builtin_", "__sync_", "__atomic_", "__c11_", "__has_", "__is_", "__arm_")
_RESERVED = re.compile(r"_[A-Z]|__[A-Z]|__.*__\Z")

_IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_PATH = re.compile(r"[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*\Z")
_VERSION = re.compile(r"[0-9][0-9A-Za-z.+-]*\Z")
_MODULE = re.compile(r"[a-z0-9_-]{1,55}\Z")
_LABEL = re.compile(r"[a-z][a-z0-9-]{0,31}\Z")

WORKER_NAME_KEYS = ("name", "workqueue", "trigger", "setup", "teardown")


def _control(value: str, allowed: str) -> str | None:
    """The first character of ``value`` that is neither printable nor in ``allowed``."""
    rest = value
    for c in allowed:
        rest = rest.replace(c, "")
    if rest.isprintable():  # one pass in C for the text that has none
        return None
    return next(c for c in value if not (c.isprintable() or c in allowed))


_TRIGRAPH = re.compile(r"\?\?[=/'()!<>-]")


def _trigraph(value: str, what: str) -> str | None:
    """Why ``value`` holds a trigraph, or None: gcc -Wall (-Wtrigraphs) warns of one in a
    string or, where a line ends with ??/ as a wrapped comment may, in a comment."""
    m = _TRIGRAPH.search(value)
    if m is None:
        return None
    tri = m.group()
    return (f"{what} must not contain the trigraph {quote(tri)}: gcc warns of it in C "
            f"(write {quote(tri[0] + ' ' + tri[1:])})")  # fmt: skip


def text_problem(kind: str, value: str) -> str | None:
    """Why ``value`` breaks the character rule ``kind``, or None."""
    if kind == "identifier":
        if not _IDENTIFIER.match(value):
            return f"{quote(value)} is not a C identifier"
        if value in C_KEYWORDS:
            return f"{quote(value)} is a C keyword"
        if value in PREDEFINED:
            return f"{quote(value)} is a macro the compiler predefines"
        if value.startswith(BUILTIN_PREFIXES):
            return f"{quote(value)} is reserved for the compiler's built-in functions"
        if _RESERVED.match(value):
            return (
                f"{quote(value)} is reserved in C: names that start with '_' and a capital, "
                "'__' and a capital, or start and end with '__' belong to the compiler"
            )
        return None
    if kind == "comment":
        if not value.strip():
            return "text must not be empty"
        if "*/" in value or "/*" in value:
            return "text must not contain '/*' or '*/': it is written into a C comment"
        if (bad := _control(value, "\n")) is not None:
            return f"text must not contain the control character {bad!r}"
        if not value.isascii():
            return "text must be ASCII: it is written into C source"
        return _trigraph(value, "text")
    if kind == "c-string":
        if not value.strip():
            return "message must not be empty"
        if not value.isascii() or not value.isprintable():
            return "message must be printable ASCII on one line: it is written into a C string"
        for c, why in (('"', "a double quote"), ("\\", "a backslash"), ("%", "a '%'")):
            if c in value:
                return f"message must not contain {why}: it is written into a C format string"
        return _trigraph(value, "message")
    if kind == "code":
        if not value.strip():
            return "code must not be empty"
        if (bad := _control(value, "\n\t")) is not None:
            return f"code must not contain the control character {bad!r}"
        if not value.isascii():
            return "code must be ASCII: it is C source"
        return _trigraph(value, "code")
    if kind == "path":
        # no '.', '..' or hidden component: each names a file or directory of its own
        if not _PATH.match(value) or any(part.startswith(".") for part in value.split("/")):
            return f"{quote(value)} is not a relative path inside a kernel tree"
        return None
    if kind == "module":
        if not _MODULE.match(value):
            return (
                f"{quote(value)} is not a kernel module name (lower-case letters, digits, '_', '-')"
            )
        return None
    if kind == "label":
        if not _LABEL.match(value):
            return (
                f"{quote(value)} is not a name: a lower-case letter, then lower-case letters, "
                f"digits and '-', at most 32 in all"
            )
        return None
    if kind == "version":
        if not _VERSION.match(value):
            return f"{quote(value)} is not a version number"
        return None
    raise AssertionError(kind)


# --- constraints carried by typing.Annotated --------------------------------


@record
class Range:
    """An integer between ``lo`` and ``hi`` inclusive (``hi`` None: unbounded)."""

    lo: int
    hi: int | None = None


@record
class Text:
    """A string with a character rule; ``kind`` names the rule for messages."""

    kind: Literal["identifier", "comment", "c-string", "path", "version", "module", "label"]


@record
class PowerOfTwo:
    """An integer that is a power of two."""


@record
class SizeLiteral:
    """An integer, or a string such as ``1G`` or ``2T`` (binary units)."""


@record
class Doc:
    """What a key means, shown in the JSON Schema and the format reference."""

    text: str


Identifier = Annotated[str, Text("identifier")]
CommentText = Annotated[str, Text("comment")]
CString = Annotated[str, Text("c-string")]
CodeText = Annotated[str, Text("code")]
TreePath = Annotated[str, Text("path")]
VersionText = Annotated[str, Text("version")]
ModuleName = Annotated[str, Text("module")]
Label = Annotated[str, Text("label")]  # a word a user types: kgen sweep --without snp-host
Byte = Annotated[int, Range(0, 0xFF)]
U32 = Annotated[int, Range(0, 0xFFFF_FFFF)]
U64 = Annotated[int, Range(0, 0xFFFF_FFFF_FFFF_FFFF)]
BitIndex64 = Annotated[int, Range(0, 63)]
BitIndex32 = Annotated[int, Range(0, 31)]
Size = Annotated[int, SizeLiteral(), PowerOfTwo(), Range(1, (1 << 64) - 1)]
# A sane maximum for an RMPOPT-style table (RMPOPT's has 2048), and what the mirror can
# simulate: one set of regions per CPU.
MAX_TABLE_ENTRIES = 1 << 20
Milliseconds = Annotated[int, Range(0, 3_600_000)]

GeneralRegister = Literal[
    "rax", "rbx", "rcx", "rdx", "rsi", "rdi",
    "r8", "r9", "r10", "r11", "r12", "r13", "r14", "r15",
]  # fmt: skip
# GCC's asm constraint letter for each register that has one
CONSTRAINT_LETTER = {"rax": "a", "rbx": "b", "rcx": "c", "rdx": "d", "rsi": "S", "rdi": "D"}
Flag = Literal["cf", "zf", "sf", "of", "pf"]
CpuidRegister = Literal["eax", "ebx", "ecx", "edx"]
ScalarType = Literal["u8", "u16", "u32", "u64", "bool", "int", "unsigned long", "pointer"]
# The register bits an asm operand of each type defines; the rest are left to the compiler
# (measured: clang -O2 passes a bool in RDX with garbage above the low byte).
OPERAND_BITS = {"u8": 8, "bool": 8, "u16": 16, "u32": 32, "int": 32}  # others: 64


# --- the spec ---------------------------------------------------------------


@record
class Node:
    """Base of every spec object: remembers where each of its keys was written."""

    marks: dict[str, Mark] = field(
        default_factory=dict, compare=False, repr=False, kw_only=True, metadata={"internal": True}
    )

    def mark(self, key: str | None = None) -> Mark:
        """Position of ``key``'s value, or of the mapping itself."""
        return self.marks.get(key or "", self.marks.get("", Mark("<spec>", 0, 0)))


@record
class EncodingByte(Node):
    byte: Annotated[Byte, Doc("the byte value, 0x00..0xff")]
    role: Annotated[
        Literal["prefix", "escape", "opcode", "modrm", "immediate"],
        Doc(
            "in this order: prefix (66, and one of F0/F2/F3, each once), escape (0F, 0F 38 or "
            "0F 3A), one opcode, modrm (register or register-indirect form) where the map takes "
            "one, immediate (1, 2 or 4 bytes); 15 bytes at most"
        ),
    ]


@record
class Fault(Node):
    exception: Annotated[Literal["UD", "GP", "PF", "VC", "NPF"], Doc("exception mnemonic")]
    when: Annotated[CommentText, Doc("condition that raises it")]
    unsure: Annotated[bool, Doc("true when the fact is not yet confirmed")] = False


@record
class Privilege(Node):
    cpl: Annotated[int, Range(0, 3), Doc("highest current privilege level allowed")]
    faults: tuple[Fault, ...] = ()


@record
class Input(Node):
    register: Annotated[GeneralRegister, Doc("register that carries the operand")]
    name: Annotated[Identifier, Doc("C parameter name in the low-level helper")]
    kind: Annotated[
        Literal[
            "physical-address", "virtual-address", "function-code",
            "page-size", "boolean", "attributes", "pointer", "value",
        ],
        Doc("what the operand means"),
    ]  # fmt: skip
    type: Annotated[ScalarType, Doc("C type of the helper parameter; 'pointer' needs points_to")]
    description: CommentText
    width: Annotated[Literal[8, 16, 32, 64], Doc("bits the instruction reads")] = 64
    align: Annotated[
        Literal["region", "page"] | None,
        Doc("the value is aligned down to this unit before the instruction sees it"),
    ] = None
    points_to: Annotated[Identifier | None, Doc("struct name for pointer operands")] = None
    access: Annotated[
        Literal["read", "write", "read-write"] | None,
        Doc("what the instruction does with the memory a pointer operand points to"),
    ] = None
    bytes: Annotated[
        Annotated[int, Range(1, 4096)] | None,
        Doc("how many bytes the instruction reads or writes through a pointer operand"),
    ] = None


@record
class ReturnCode(Node):
    name: Annotated[Identifier, Doc("kernel constant for the code")]
    value: U64
    description: CommentText
    retry: Annotated[bool, Doc("software retries the instruction on this code")] = False


@record
class Output(Node):
    name: Annotated[Identifier, Doc("name of the result in C")]
    type: Annotated[Literal["bool", "int", "u64"], Doc("C type of the result")]
    description: CommentText
    register: Annotated[GeneralRegister | None, Doc("register holding the result")] = None
    flag: Annotated[Flag | None, Doc("RFLAGS bit holding the result")] = None
    codes: Annotated[tuple[ReturnCode, ...], Doc("return codes of a register output")] = ()
    software_code: Annotated[
        ReturnCode | None,
        Doc("code the kernel helper returns when the flag is set (e.g. PVALIDATE_FAIL_NOUPDATE)"),
    ] = None

    # The loader gives each output exactly one of register and flag: code that has chosen
    # the outputs of one kind reads that one through these.
    @property
    def required_register(self) -> GeneralRegister:
        if self.register is None:
            raise ValueError(f"output {self.name} is a flag output, not a register output")
        return self.register

    @property
    def required_flag(self) -> Flag:
        if self.flag is None:
            raise ValueError(f"output {self.name} is a register output, not a flag output")
        return self.flag


@record
class FunctionCode(Node):
    name: Annotated[Identifier, Doc("lower-case name; the enum constant is PREFIX + NAME")]
    value: Annotated[int, Range(0)]
    effect: Annotated[
        Literal["scan-and-set", "read"],
        Doc("scan-and-set: mark the region when it holds no assigned page; read: only report"),
    ]
    description: CommentText


@record
class FunctionCodes(Node):
    operand: Annotated[GeneralRegister, Doc("input register that carries the code")]
    codes: tuple[FunctionCode, ...]


@record
class Cpuid(Node):
    leaf: U32
    register: CpuidRegister
    bit: BitIndex32
    feature: Annotated[Identifier, Doc("kernel feature flag, e.g. X86_FEATURE_RMPOPT")]
    word: Annotated[int, Range(0, 63), Doc("word of the kernel's capability array")]
    word_bit: BitIndex32
    subleaf: U32 | None = None


@record
class MsrBit(Node):
    name: Identifier
    bit: BitIndex64


@record
class MsrField(Node):
    low_bit: BitIndex64
    high_bit: BitIndex64
    description: CommentText


@record
class Msr(Node):
    name: Identifier
    number: U32
    enable: MsrBit
    base: Annotated[MsrField | None, Doc("bits holding the aligned base address")] = None
    scope: Annotated[
        Literal["core", "thread"] | None,
        Doc(
            "core: one MSR per core, shared by its SMT threads (written once per core); "
            "thread: one per logical CPU"
        ),
    ] = None
    value: Annotated[
        Literal["base | enable", "enable"] | None,
        Doc(
            "what enabling writes: the region-aligned start of memory ORed with the enable bit, "
            "or the enable bit alone"
        ),
    ] = None
    fault: Annotated[
        Literal["UD", "GP"] | None,
        Doc("the exception the instruction raises on a core whose enable bit is clear"),
    ] = None


@record
class Table(Node):
    region_size: Annotated[Size, Doc("bytes covered by one table bit, e.g. 1G")]
    entries: Annotated[
        int, Range(1, MAX_TABLE_ENTRIES), Doc("bits in each CPU's table, at most 2^20")
    ]
    coverage: Annotated[Size, Doc("bytes one table covers from its base, e.g. 2T")]


@record
class Assembler(Node):
    binutils: Annotated[VersionText | None, Doc("first binutils that knows the mnemonic")] = None
    llvm: Annotated[VersionText | None, Doc("first LLVM that knows the mnemonic")] = None


@record
class Instruction(Node):
    mnemonic: Annotated[Identifier, Doc("lower-case assembler mnemonic")]
    title: CommentText
    vendor: Literal["amd", "intel"]
    description: CommentText
    encoding: tuple[EncodingByte, ...]
    privilege: Privilege
    inputs: tuple[Input, ...]
    outputs: tuple[Output, ...]
    clobbers: tuple[Literal["memory", "cc"], ...]
    preserved: Annotated[
        tuple[GeneralRegister, ...], Doc("input registers the instruction leaves unchanged")
    ] = ()
    function_codes: FunctionCodes | None = None
    cpuid: Cpuid | None = None
    msr: Msr | None = None
    table: Table | None = None
    assembler: Assembler | None = None
    requires: Annotated[tuple[CommentText, ...], Doc("conditions for the instruction to work")] = ()
    references: tuple[CommentText, ...] = ()

    def return_output(self) -> Output | None:
        """The register output the low-level helper returns (the loader allows one)."""
        return next((o for o in self.outputs if o.register and not o.flag), None)

    def pointer_operand(self) -> PointerOperand | None:
        """The pointer input (the harness passes one), with the memory it reaches."""
        i = next((i for i in self.inputs if i.type == "pointer"), None)
        if i is None:
            return None
        if i.bytes is None or i.access is None:  # the loader requires both of a pointer
            raise ValueError(f"pointer input {i.name} needs bytes and access")
        return PointerOperand(i, i.bytes, i.access)


@record
class PointerOperand:
    """A pointer input and the memory the instruction reaches through it."""

    input: Input
    bytes: int
    access: Literal["read", "write", "read-write"]


@record
class RawHelper(Node):
    name: Annotated[Identifier, Doc("low-level helper that mirrors the instruction reference")]
    header: Annotated[TreePath, Doc("kernel file the helpers belong in")]
    max_retries: Annotated[
        Annotated[int, Range(1, 1000)] | None,
        Doc("re-executions at most while the instruction returns a retry code"),
    ] = None


@record
class KernelArgument(Node):
    name: Annotated[Identifier, Doc("the kernel function's parameter, in order")]
    input: Annotated[Identifier, Doc("the instruction input it carries (an inputs[].name)")]
    shift: Annotated[
        Annotated[int, Range(0, 63)],
        Doc(
            "the parameter is the input shifted right this far (pfn = paddr >> 12) and the "
            "function shifts it back: the input's low bits cannot be passed"
        ),
    ] = 0


@record
class OutOfLine(Node):
    name: Annotated[Identifier, Doc("the kernel's own function that executes the instruction")]
    source: Annotated[TreePath, Doc("file of the kernel tree that defines it")]
    arguments: Annotated[
        tuple[KernelArgument, ...], Doc("its parameters: each carries one instruction input")
    ]
    failure: Annotated[
        Identifier | None,
        Doc(
            "errno the function returns negated when the return code is not 0 (e.g. EFAULT); "
            "without it, it returns the code as the low-level helper does"
        ),
    ] = None


@record
class Helper(Node):
    name: Annotated[Identifier, Doc("higher-level helper")]
    parameter: Annotated[Identifier, Doc("its one parameter, e.g. pa")]
    function: Annotated[Identifier, Doc("function code the helper passes")]


@record
class KernelEnum(Node):
    name: Annotated[Identifier, Doc("enum tag for the function codes")]
    prefix: Annotated[Identifier, Doc("constant prefix, e.g. RMPOPT_FUNC_")]


@record
class Worker(Node):
    kind: Annotated[Literal["kthread", "delayed-work"], Doc("how the sweep is driven")]
    name: Annotated[Identifier, Doc("worker function (and thread) name")]
    trigger: Annotated[Identifier, Doc("function that requests a sweep")]
    setup: Annotated[Identifier, Doc("function that creates the worker and asks for a pass")]
    teardown: Annotated[Identifier, Doc("function that stops the worker cleanly")]
    workqueue: Annotated[Identifier | None, Doc("dedicated workqueue (delayed-work only)")] = None
    first_delay_ms: Annotated[Milliseconds | None, Doc("delay of the pass after setup")] = None
    rearm_delay_ms: Annotated[
        Milliseconds | None, Doc("each request re-arms the work this far ahead")
    ] = None


@record
class Sweep(Node):
    source: Annotated[TreePath, Doc("kernel file the sweep belongs in")]
    pass_name: Annotated[Identifier, Doc("function that runs one pass over all regions")]
    leader: Literal["current-cpu"]
    cpus: Literal["primary-threads"]
    followers: Literal["primary-threads-except-leader-siblings"]
    resched: Literal["between-regions"]
    log_message: Annotated[CString, Doc("pr_info() text before the range; says it attempts")]
    cap_message: Annotated[CString, Doc("pr_info() text when memory lies above the coverage")]
    workers: tuple[Worker, ...]
    cap_log: Annotated[
        Literal["every-pass", "at-setup"],
        Doc("when cap_message is printed: by every pass, or once by setup (as merged)"),
    ] = "every-pass"
    config: Annotated[
        Identifier | None,
        Doc(
            "Kconfig symbol that builds the sweep's source file (e.g. CONFIG_KVM_AMD_SEV); "
            "without it, callers get inline stubs of the exported functions"
        ),
    ] = None


# The kernel functions a prerequisite may be checked with: the header that declares each and
# the prefix every argument of it has (its enum's constants).  A spec names one of these and
# a constant; no other C text of a prerequisite reaches the generated code.
PREREQUISITE_CHECKS = {
    "cc_platform_has": ("linux/cc_platform.h", "CC_ATTR_"),
}


@record
class Prerequisite(Node):
    name: Annotated[
        Label, Doc("what the platform must have, e.g. snp-host; kgen sweep --without NAME")
    ]
    check: Annotated[
        Literal["cc_platform_has"],
        Doc("the kernel function that answers it (cc_platform_has, from <linux/cc_platform.h>)"),
    ]
    argument: Annotated[
        Identifier, Doc("the constant the check is given, e.g. CC_ATTR_HOST_SEV_SNP")
    ]


@record
class CallSite(Node):
    call: Annotated[
        Literal["setup", "trigger", "teardown"], Doc("which of the worker's functions is called")
    ]
    source: Annotated[TreePath, Doc("file of the kernel tree that calls it")]
    function: Annotated[Identifier, Doc("the function the call goes in")]
    after: Annotated[
        CodeText,
        Doc(
            "the statement the call follows, as the tree writes it (layout and comments do not "
            "matter); kgen apply and patch look for it and say so when it is not there"
        ),
    ]
    unless: Annotated[
        Identifier | None,
        Doc(
            "a variable of that function: the call is made only when it is false (e.g. panic, "
            "where nothing may sleep)"
        ),
    ] = None


@record
class Hotplug(Node):
    state: Annotated[
        Literal["CPUHP_AP_ONLINE_DYN"],
        Doc(
            "the CPU hotplug state whose callbacks enable the instruction on a core that comes "
            "online while it is enabled: CPUHP_AP_ONLINE_DYN, whose callbacks run on that CPU"
        ),
    ]
    name: Annotated[
        CString,
        Doc("the state's name in /sys/devices/system/cpu/hotplug/states, e.g. x86/rmpopt:online"),
    ]


@record
class Enable(Node):
    check: Annotated[
        Literal["cpu_feature_enabled"],
        Doc("how setup tests instruction.cpuid.feature before anything else"),
    ]
    mutex: Annotated[Identifier, Doc("the one mutex over setup, trigger and teardown")]
    setup_caller: Annotated[
        ModuleName, Doc("module that calls the worker's setup (exported to it)")
    ]
    trigger_caller: Annotated[
        ModuleName, Doc("module that calls the worker's trigger (exported to it)")
    ]
    teardown_caller: Annotated[
        ModuleName, Doc("module that calls the worker's teardown (exported to it)")
    ]
    msr_on_teardown: Annotated[
        Literal["clear", "keep"], Doc("clear: teardown writes 0 to the MSR of every core")
    ]
    hotplug: Annotated[
        Hotplug,
        Doc(
            "the CPU hotplug state setup registers, so that a core that comes online while the "
            "instruction is enabled gets its MSR written, and teardown removes"
        ),
    ]
    call_sites: Annotated[
        tuple[CallSite, ...],
        Doc(
            "where a kernel tree calls setup, trigger and teardown (kgen apply and patch add the "
            "calls)"
        ),
    ] = ()
    requires: Annotated[
        tuple[Prerequisite, ...],
        Doc("what setup checks after the feature, in order; setup returns unless each holds"),
    ] = ()


@record
class SkippedRule(Node):
    rule: Annotated[CommentText, Doc("a kernel review rule, by name (e.g. byte-comment)")]
    reason: Annotated[CommentText, Doc("why it does not hold for this spec; shown in every report")]


@record
class Review(Node):
    skip: Annotated[tuple[SkippedRule, ...], Doc("review rules not applied to this spec")]


@record
class Kernel(Node):
    raw_helper: RawHelper
    helper: Helper | None = None
    enum: KernelEnum | None = None
    sweep: Sweep | None = None
    enable: Annotated[
        Enable | None,
        Doc("how the kernel turns the instruction on and off around the sweep; a sweep needs it"),
    ] = None
    review: Annotated[Review | None, Doc("how kgen validate's review treats this spec")] = None
    out_of_line: Annotated[
        OutOfLine | None,
        Doc(
            "the kernel's out-of-line function around the instruction (e.g. rmpupdate() in "
            "arch/x86/virt/svm/sev.c), which compare --reference TREE runs"
        ),
    ] = None


@record
class Spec(Node):
    format: Annotated[Literal[1], Doc("spec format version")]
    instruction: Instruction
    kernel: Kernel
    path: str = field(default="", compare=False, kw_only=True, metadata={"internal": True})
    source: str = field(
        default="", compare=False, repr=False, kw_only=True, metadata={"internal": True}
    )

    # --- typed views of the optional sections, chosen once per spec ------------------------

    @cached_property
    def helper_view(self) -> HelperSpec | None:
        """The spec as one with a higher-level helper, or None when it has none."""
        k, fc = self.kernel, self.instruction.function_codes
        if k.helper is None or fc is None:
            return None
        return HelperSpec(self, k.helper, fc)

    @cached_property
    def enum_view(self) -> EnumSpec | None:
        """The spec as one with an enum of its function codes, or None when it has none."""
        k, fc = self.kernel, self.instruction.function_codes
        if k.enum is None or fc is None:
            return None
        return EnumSpec(self, k.enum, fc)

    @cached_property
    def table_view(self) -> TableSpec | None:
        """The spec as one with a table of regions, or None when it has none."""
        insn = self.instruction
        if insn.table is None:
            return None
        return TableSpec(self, insn.table, insn.function_codes)

    @cached_property
    def sweep_view(self) -> SweepSpec | None:
        """The spec as one with a sweep worker, or None when it has none."""
        insn, k = self.instruction, self.kernel
        if k.sweep is None:
            return None
        missing = [name for name, section in (
            ("instruction.table", insn.table), ("instruction.function_codes", insn.function_codes),
            ("instruction.cpuid", insn.cpuid), ("instruction.msr", insn.msr),
            ("kernel.helper", k.helper), ("kernel.enable", k.enable),
        ) if section is None]  # fmt: skip
        if missing:  # the loader refuses such a spec; one built by hand may still get here
            raise SectionMissing(self, "a sweep", missing)
        assert insn.table and insn.function_codes and insn.cpuid and insn.msr
        assert k.helper and k.enable
        return SweepSpec(self, k.helper, insn.function_codes, insn.table, k.sweep, k.enable,
                         insn.cpuid, insn.msr)  # fmt: skip

    def as_helper(self) -> HelperSpec:
        """The helper view of a spec that must have a helper."""
        if self.helper_view is None:
            raise SectionMissing(self, "a helper", ["kernel.helper"])
        return self.helper_view

    def as_enum(self) -> EnumSpec:
        """The enum view of a spec that must have an enum."""
        if self.enum_view is None:
            raise SectionMissing(self, "an enum", ["kernel.enum"])
        return self.enum_view

    def as_table(self) -> TableSpec:
        """The table view of a spec that must have a table."""
        if self.table_view is None:
            raise SectionMissing(self, "the table model", ["instruction.table"])
        return self.table_view

    def as_sweep(self) -> SweepSpec:
        """The sweep view of a spec that must have a sweep."""
        if self.sweep_view is None:
            raise SectionMissing(self, "a sweep", ["kernel.sweep"])
        return self.sweep_view


class SectionMissing(ValueError):
    """Code that needs a section was given a spec without it (a caller's mistake: the loader
    checks which sections go together)."""

    def __init__(self, spec: Spec, what: str, missing: list[str]):
        super().__init__(f"{spec.path or spec.instruction.mnemonic}: {what} needs "
                         + ", ".join(missing))  # fmt: skip


@record
class HelperSpec:
    """A spec with a higher-level helper and the function codes it passes one of."""

    spec: Spec
    helper: Helper
    function_codes: FunctionCodes


@record
class EnumSpec:
    """A spec with a kernel enum of its function codes (the loader requires the codes)."""

    spec: Spec
    enum: KernelEnum
    function_codes: FunctionCodes


@record
class TableSpec:
    """A spec with an RMPOPT-style table of regions, which the mirror's hardware models."""

    spec: Spec
    table: Table
    function_codes: FunctionCodes | None


@record
class SweepSpec(HelperSpec):
    """A spec with a sweep worker, with every section a sweep needs present: the loader
    refuses a sweep without instruction.table, kernel.helper (whose function code needs
    instruction.function_codes) and kernel.enable, and an enable without instruction.cpuid
    and instruction.msr."""

    table: Table
    sweep: Sweep
    enable: Enable
    cpuid: Cpuid
    msr: Msr


# --- the names a spec puts in the kernel -------------------------------------


def retry_limit_name(spec: Spec) -> str:
    """The constant that bounds a retry loop, e.g. RMPUPDATE_MAX_RETRIES."""
    return spec.instruction.mnemonic.upper() + "_MAX_RETRIES"


def kernel_names(spec: Spec) -> list[tuple[str, Mark]]:
    """The C names a spec puts in the kernel besides its workers', with their marks."""
    k, insn = spec.kernel, spec.instruction
    names: list[tuple[str, Mark]] = [(k.raw_helper.name, k.raw_helper.mark("name"))]
    for o in insn.outputs:
        names += [(c.name, c.mark("name")) for c in o.codes]
        if o.software_code:
            names.append((o.software_code.name, o.software_code.mark("name")))
    if k.raw_helper.max_retries is not None:
        names.append((retry_limit_name(spec), k.raw_helper.mark("max_retries")))
    if k.helper:
        names.append((k.helper.name, k.helper.mark("name")))
    if k.enum and insn.function_codes:
        names.append((k.enum.name, k.enum.mark("name")))
        # one constant per distinct code name: a repeated name is reported on its own
        first_of_name = {c.name: c for c in reversed(insn.function_codes.codes)}
        names += [
            (k.enum.prefix + name.upper(), c.mark("name")) for name, c in first_of_name.items()
        ]
    if k.sweep:
        names.append((k.sweep.pass_name, k.sweep.mark("pass_name")))
    if k.enable:
        names.append((k.enable.mutex, k.enable.mark("mutex")))
    return names


def global_names(spec: Spec) -> list[tuple[str, Mark]]:
    """Every C name a spec puts in a kernel tree, once each: what no other spec may define.

    Besides :func:`kernel_names`, the names of its worker forms (the forms are
    alternatives, so a name they share counts once) and the feature and MSR
    names its header fragments define.
    """
    names = kernel_names(spec)
    seen = {name for name, _ in names}
    k, insn = spec.kernel, spec.instruction
    more: list[tuple[str, Mark]] = []
    for w in k.sweep.workers if k.sweep else ():
        more += [(getattr(w, key), w.mark(key)) for key in WORKER_NAME_KEYS if getattr(w, key)]
    if k.sweep and k.enable and insn.cpuid and insn.msr:
        more.append((insn.cpuid.feature, insn.cpuid.mark("feature")))
        more += [(insn.msr.name, insn.msr.mark("name")),
                 (insn.msr.enable.name, insn.msr.enable.mark("name"))]  # fmt: skip
    for name, mark in more:
        if name not in seen:
            seen.add(name)
            names.append((name, mark))
    return names

"""Write the broken-spec corpus: _base.yaml with one defect per file.

Each defect replaces one exact piece of _base.yaml.  The replacement marks with
"«" the position where the loader must report the problem; that position is
computed here from the text, never by running the loader.  Each file starts
with two comment lines that the test reads:

    # defect: what is wrong
    # expect: LINE:COL: message

Run `make broken-specs` (or `python tests/broken/regen.py`) after changing a
defect or _base.yaml; tests/test_broken_specs.py fails while the files are stale.
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

HERE = Path(__file__).parent
MARK = "«"

# (file stem, what is wrong, old text, new text with «, expected message)
DEFECTS: list[tuple[str, str, str, str, str]] = [
    # YAML syntax and safety
    ("yaml-unclosed-flow", "a flow mapping is not closed",
     "    - {byte: 0x01, role: opcode}\n    - {byte: 0xee",
     "    - {byte: 0x01, role: opcode\n    - «{byte: 0xee",
     "invalid YAML: expected ',' or '}', but got '{' (while parsing a flow mapping "
     "that starts at line 14, column 7)"),
    ("yaml-tab-indent", "a tab indents a key",
     "  title: Frobnicate", "«\ttitle: Frobnicate",
     "invalid YAML: found character '\\t' that cannot start any token"),
    ("yaml-duplicate-top-key", "a top-level key appears twice",
     "format: 1\n", "format: 1\n«format: 1\n",
     "duplicate key 'format' (first defined at line {line:format: 1})"),
    ("yaml-duplicate-nested-key", "a key inside a flow mapping appears twice",
     "{name: MSR_FROB_ENABLE, bit: 1}", "{name: MSR_FROB_ENABLE, bit: 1, «bit: 2}",
     "duplicate key 'bit' (first defined at line {line:MSR_FROB_ENABLE})"),
    ("yaml-alias", "an alias repeats a value",
     "  requires: [frob mode on]\n  references: [none, it is made up]",
     "  requires: &r [frob mode on]\n  references: «*r",
     "alias '*r' is not allowed in a spec; write the value out"),
    ("yaml-python-tag", "an unsafe python tag",
     "  title: Frobnicate Optimize", "  title: «!!python/object:os.system Frobnicate",
     "could not determine a constructor for the tag 'tag:yaml.org,2002:python/object:os.system'"),
    ("yaml-two-documents", "a second YAML document follows",
     "format: 1\n", "format: 1\n«---\nformat: 1\n",
     "invalid YAML: expected a single document in the stream, but found another document"),
    ("yaml-top-level-list", "the document is a list, not a mapping",
     "format: 1\ninstruction:", "- format: 1\n«instruction:",
     "invalid YAML: expected <block end>, but found '?' (while parsing a block collection "
     "that starts at line 5, column 1)"),
    # unknown, missing and mistyped keys
    ("key-unknown-top", "an unknown top-level key",
     "format: 1\n", "format: 1\n«formats: 2\n",
     "unknown key 'formats' (did you mean 'format'?); Spec has: format, instruction, kernel"),
    ("key-unknown-nested", "an unknown key in the table",
     "    entries: 512\n", "    entries: 512\n    «entires: 512\n",
     "unknown key 'entires' (did you mean 'entries'?); Table has: region_size, entries, "
     "coverage"),
    ("key-missing-vendor", "a required key is missing",
     "  mnemonic: frobopt\n  title: Frobnicate Optimize\n  vendor: intel\n",
     "  «mnemonic: frobopt\n  title: Frobnicate Optimize\n",
     "missing required key 'vendor' in Instruction"),
    ("key-missing-kernel", "the kernel section is missing",
     "kernel:\n  raw_helper: {name: __frobopt, header: arch/x86/include/asm/frob.h, max_retries: 8}\n",
     "kernel_:\n  raw_helper: {name: __frobopt, header: arch/x86/include/asm/frob.h, max_retries: 8}\n",
     ""),  # expectation filled in below: two messages share a defect
    ("type-int-is-string", "cpl is a word",
     "    cpl: 0", "    cpl: «zero",
     "expected an integer, got a string 'zero'"),
    ("type-int-is-bool", "a bit number is a boolean",
     "    bit: 5\n", "    bit: «true\n",
     "expected an integer, got a boolean 'true'"),
    ("type-list-is-scalar", "clobbers is not a list",
     "  clobbers: [memory, cc]", "  clobbers: «memory",
     "expected a list, got a string 'memory'"),
    ("type-mapping-is-int", "privilege is a number",
     "  privilege:\n    cpl: 0\n    faults:\n      - {exception: GP, when: the frob MSR is clear}\n",
     "  privilege: «0\n",
     "expected a mapping (Privilege), got an integer '0'"),
    ("type-timestamp", "a version reads as a date",
     'llvm: "19"', "llvm: «2024-01-01",
     "expected a string, got date '2024-01-01'"),
    ("type-bad-width", "an operand width that is not 8/16/32/64",
     "      width: 8\n", "      width: «12\n",
     "expected one of 8, 16, 32, 64, got an integer '12'"),
    ("literal-vendor", "an unknown vendor",
     "  vendor: intel", "  vendor: «arm",
     "expected one of 'amd', 'intel', got a string 'arm' (did you mean 'amd'?)"),
    ("literal-role-typo", "an encoding role with a typo",
     "{byte: 0x01, role: opcode}", "{byte: 0x01, role: «opcod}",
     "expected one of 'prefix', 'escape', 'opcode', 'modrm', 'immediate', got a string "
     "'opcod' (did you mean 'opcode'?)"),
    ("literal-format-2", "a format version kgen does not know",
     "format: 1\n", "format: «2\n",
     "expected one of 1, got an integer '2'"),
    # encoding
    ("byte-too-large", "a byte above 0xff",
     "{byte: 0xee, role: modrm}", "{byte: «0x100, role: modrm}",
     "value 0x100 is out of range 0..255"),
    ("byte-negative", "a negative byte",
     "{byte: 0x01, role: opcode}", "{byte: «-1, role: opcode}",
     "value -0x1 is out of range 0..255"),
    ("encoding-not-a-prefix", "a prefix byte that is no prefix",
     "{byte: 0x66, role: prefix}", "{byte: «0x67, role: prefix}",
     "0x67 is not a 66/F2/F3/F0 prefix"),
    ("encoding-bad-escape", "an escape byte that is not 0x0f",
     "{byte: 0x0f, role: escape}", "{byte: «0x0e, role: escape}",
     "the escape byte is 0x0f, not 0x0e"),
    ("encoding-modrm-before-opcode", "ModRM comes before the opcode",
     "    - {byte: 0x01, role: opcode}\n    - {byte: 0xee, role: modrm}",
     "    - {byte: 0xee, role: modrm}\n    - «{byte: 0x01, role: opcode}",
     "opcode byte after a modrm byte; the order is prefix, escape, opcode, modrm, immediate"),
    ("encoding-no-opcode", "the opcode byte is missing",
     "  encoding:\n    - {byte: 0x66, role: prefix}\n    - {byte: 0x0f, role: escape}\n"
     "    - {byte: 0x01, role: opcode}\n",
     "  encoding:\n    «- {byte: 0x66, role: prefix}\n    - {byte: 0x0f, role: escape}\n",
     "the encoding has no opcode byte"),
    # operands and outputs
    ("input-register-repeats", "two inputs in one register",
     "    - register: rdi\n", "    - register: «rdx\n",
     "input register 'rdx' repeats (first at line {line:register: rdx})"),
    ("input-name-repeats", "two inputs with one name",
     "      name: mode\n", "      name: «base_pa\n",
     "input name 'base_pa' repeats (first at line {line:name: base_pa})"),
    ("input-pointer-no-target", "a pointer operand without points_to",
     "      points_to: frob_desc\n", "",
     ""),  # position is the type key: filled in below
    ("output-register-and-flag", "an output names a register and a flag",
     "    - flag: zf\n", "    - «flag: zf\n      register: rbx\n",
     "an output has exactly one of register or flag"),
    ("output-flag-no-cc", "a flag output without the cc clobber",
     "  clobbers: [memory, cc]", "  clobbers: «[memory]",
     "a flag output needs the 'cc' clobber"),
    ("output-code-repeats", "two return codes share a value",
     "{name: FROB_BUSY, value: 3,", "{name: FROB_BUSY, value: «0,",
     "return code value 0x0 repeats (first at line {line:FROB_OK})"),
    ("input-pointer-no-bytes", "a pointer operand without the bytes it accesses",
     "      bytes: 24\n", "",
     ""),  # position is the type key: filled in below
    ("output-two-registers", "two register outputs",
     "    - flag: zf\n", "    - register: «rbx\n      name: rc2\n      type: int\n"
     "      description: Second code\n    - flag: zf\n",
     "a helper returns one register output, not two"),
    ("output-flag-no-software-code", "a flag beside a return code, with no code to return",
     "      software_code: {name: FROB_STALE, value: 0x1ff, description: The table was stale}\n",
     "",
     ""),  # position is the flag key: filled in below
    ("output-software-code-repeats", "the software code repeats a return code",
     "{name: FROB_STALE, value: 0x1ff,", "{name: FROB_STALE, value: «3,",
     "software_code repeats a return code's value"),
    ("retry-unbounded", "a retried return code without max_retries",
     ", max_retries: 8}", "}",
     ""),  # position is the raw_helper mapping: filled in below
    ("retry-limit-without-retry", "max_retries but no code is retried",
     "Busy, retry: true}", "Busy}",
     ""),  # position is max_retries: filled in below
    ("preserved-not-input", "a preserved register that is no input",
     "  preserved: [rdx]", "  preserved: [«rbx]",
     "preserved register 'rbx' is not an input"),
    # function codes
    ("fcode-value-repeats", "two function codes share a value",
     "{name: heavy, value: 0xff,", "{name: heavy, value: «0,",
     "function code value 0x0 repeats (first at line {line:name: light})"),
    ("fcode-name-repeats", "two function codes share a name",
     "      - {name: heavy, value: 0xff, effect: scan-and-set, description: Heavy frobbing}\n",
     "      - {name: heavy, value: 0xff, effect: scan-and-set, description: Heavy frobbing}\n"
     "      - {name: «light, value: 2, effect: read, description: Light again}\n",
     "function code name 'light' repeats (first at line {line:name: light})"),
    ("fcode-too-wide", "a function code that does not fit the 8-bit operand",
     "{name: heavy, value: 0xff,", "{name: heavy, value: «0x100,",
     "function code 0x100 does not fit the 8-bit operand rsi"),
    ("fcode-operand-unknown", "the function-code operand is not an input",
     "    operand: rsi", "    operand: «r8",
     "'r8' is not one of the inputs"),
    ("fcode-operand-wrong-kind", "the function-code operand is an address",
     "    operand: rsi", "    operand: «rdx",
     "input 'rdx' is not of kind function-code"),
    # sizes, table, cpuid, msr
    ("size-not-power-of-two", "a region size of 3M",
     "    region_size: 2M", "    region_size: «3M",
     "0x300000 is not a power of two"),
    ("size-bad-unit", "a size written with a unit kgen does not read",
     "    coverage: 1G", "    coverage: «1 GB",
     "'1 GB' is not a size (write e.g. 4096, 2M, 1G, 2T)"),
    ("table-coverage-mismatch", "coverage is not region size x entries",
     "    coverage: 1G", "    coverage: «2G",
     "coverage 0x80000000 is not region_size 0x200000 x entries 512 = 0x40000000"),
    ("cpuid-bit-32", "a CPUID bit beyond 31",
     "    bit: 5\n", "    bit: «32\n",
     "value 0x20 is out of range 0..31"),
    ("msr-number-too-large", "an MSR number wider than 32 bits",
     "    number: 0x1234", "    number: «0x100000000",
     "value 0x100000000 is out of range 0..0xffffffff"),
    ("msr-enable-in-base", "the enable bit lies inside the base field",
     "{name: MSR_FROB_ENABLE, bit: 1}", "{name: MSR_FROB_ENABLE, bit: «30}",
     "the enable bit lies inside the base field"),
    ("msr-base-too-high", "the base field cannot hold a region-aligned address",
     "base: {low_bit: 21,", "base: {low_bit: «22,",
     "a base starting at bit 22 cannot hold every 0x200000-aligned address"),
    # names and text
    ("name-not-identifier", "a helper name that is not a C identifier",
     "helper: {name: frobopt,", "helper: {name: «2frob,",
     "'2frob' is not a C identifier"),
    ("name-c-keyword", "an input named after a C keyword",
     "      name: desc\n", "      name: «static\n",
     "'static' is a C keyword"),
    ("name-bad-prefix", "an enum prefix with a dash",
     "prefix: FROB_MODE_}", "prefix: «FROB-MODE_}",
     "'FROB-MODE_' is not a C identifier"),
    ("name-collision", "the sweep function has the helper's name",
     "    pass_name: frob_sweep", "    pass_name: «frobopt",
     "kernel name 'frobopt' repeats (first at line {line:name: frobopt})"),
    ("text-closes-comment", "a description that would end a C comment",
     "      description: Frob mode\n", "      description: «Frob */ mode\n",
     "text must not contain '/*' or '*/': it is written into a C comment"),
    ("text-control-char", "a description with an escape character",
     "    - {exception: GP, when: the frob MSR is clear}",
     '    - {exception: GP, when: «"the frob\\x1b MSR"}',
     "text must not contain the control character '\\x1b'"),
    ("cstring-quote", "a log message with a double quote",
     "    log_message: Attempt frobbing on range", "    log_message: «Attempt \"frobbing\"",
     "message must not contain a double quote: it is written into a C format string"),
    ("cstring-percent", "a log message with a printf conversion",
     "    cap_message: Beyond the frob table", "    cap_message: «Beyond %s table",
     "message must not contain a '%': it is written into a C format string"),
    ("path-dotdot", "a kernel path that climbs out of the tree",
     "    source: arch/x86/kernel/frob.c", "    source: «../frob.c",
     "'../frob.c' is not a relative path inside a kernel tree"),
    # kernel usage
    ("helper-unknown-function", "the helper passes a function code that does not exist",
     "parameter: addr, function: heavy}", "parameter: addr, function: «medium}",
     "helper function 'medium' is not a function code (heavy, light)"),
    ("helper-reads-only", "the sweep's helper passes a function code that never sets a bit",
     "parameter: addr, function: heavy}", "parameter: addr, function: «light}",
     "the sweep calls frobopt(), whose function 'light' only reads: it would never optimize "
     "a region"),
    ("worker-kind-repeats", "two kthread workers",
     "      - kind: delayed-work\n", "      - kind: «kthread\n",
     ""),  # several messages: filled in below
    ("worker-no-workqueue", "a delayed-work worker without a workqueue",
     "      - kind: delayed-work\n", "      - «kind: delayed-work\n",
     "a delayed-work worker needs 'workqueue'"),
    ("worker-kthread-delay", "a kthread worker with a re-arm delay",
     "teardown: frob_exit}", "teardown: frob_exit, rearm_delay_ms: «5}",
     "a kthread worker takes no 'rearm_delay_ms'"),
    ("delay-out-of-range", "a re-arm delay of two hours",
     "        rearm_delay_ms: 100", "        rearm_delay_ms: «7200000",
     "value 0x6ddd00 is out of range 0..0x36ee80"),
    ("path-dot", "a header path that names the generated directory itself",
     "header: arch/x86/include/asm/frob.h", "header: «.",
     "'.' is not a relative path inside a kernel tree"),
    ("path-hidden", "a hidden component, where kgen keeps its temporary files",
     "    source: arch/x86/kernel/frob.c", "    source: «arch/x86/.kgen-tmp-frob.c",
     "'arch/x86/.kgen-tmp-frob.c' is not a relative path inside a kernel tree"),
    # an encoding is one x86 instruction: layout and decoder
    ("encoding-too-long", "16 bytes: longer than any x86 instruction",
     "    - {byte: 0xee, role: modrm}\n",
     "    - {byte: 0xee, role: modrm}\n" + "    - {byte: 0x00, role: immediate}\n" * 11
     + "    - «{byte: 0x00, role: immediate}\n",
     "the encoding has 16 bytes; an x86 instruction has at most 15"),
    ("encoding-two-opcodes", "a second opcode byte",
     "    - {byte: 0x01, role: opcode}\n",
     "    - {byte: 0x01, role: opcode}\n    - {byte: «0x90, role: opcode}\n",
     "a second opcode byte 0x90: an instruction has exactly one opcode byte (the first is 0x01)"),
    ("encoding-prefix-repeats", "a prefix given twice",
     "    - {byte: 0x66, role: prefix}\n",
     "    - {byte: 0x66, role: prefix}\n    - {byte: «0x66, role: prefix}\n",
     "prefix 0x66 repeats (first at line {line:{byte: 0x66}): an instruction takes each prefix once"),
    ("encoding-prefix-group", "two prefixes of one group (F2 and F3)",
     "    - {byte: 0x66, role: prefix}\n",
     "    - {byte: 0xf2, role: prefix}\n    - {byte: «0xf3, role: prefix}\n",
     "prefix 0xf3 after 0xf2: F0, F2 and F3 are one prefix group, an instruction takes one of them"),
    ("encoding-immediate-size", "a 3-byte immediate",
     "    - {byte: 0xee, role: modrm}\n",
     "    - {byte: 0xee, role: modrm}\n    - {byte: «0x01, role: immediate}\n"
     "    - {byte: 0x02, role: immediate}\n    - {byte: 0x03, role: immediate}\n",
     "3 immediate bytes: an immediate is 1, 2 or 4 bytes"),
    ("encoding-no-escape", "an opcode without the 0F escape",
     "  encoding:\n    - {byte: 0x66, role: prefix}\n    - {byte: 0x0f, role: escape}\n",
     "  encoding:\n    «- {byte: 0x66, role: prefix}\n",
     "the encoding has no escape byte: the format describes instructions of the 0F, 0F 38 and "
     "0F 3A opcode maps"),
    ("encoding-bad-second-escape", "a second escape byte that names no opcode map",
     "    - {byte: 0x0f, role: escape}\n",
     "    - {byte: 0x0f, role: escape}\n    - {byte: «0x39, role: escape}\n",
     "the second escape byte is 0x38 or 0x3a (the 0F 38 and 0F 3A maps), not 0x39"),
    ("encoding-no-modrm", "group 7 without its ModRM byte",
     "    - {byte: 0x01, role: opcode}\n    - {byte: 0xee, role: modrm}\n",
     "    - {byte: «0x01, role: opcode}\n",
     "opcode 0F 01 takes a ModRM byte, and the encoding has none"),
    ("encoding-modrm-needs-sib", "a ModRM byte that needs a SIB byte",
     "{byte: 0xee, role: modrm}", "{byte: «0x04, role: modrm}",
     "ModRM 0x04: mod 00, rm 100 needs a SIB byte, which the format has no role for; use mod 11 "
     "or a register-indirect operand"),
    ("encoding-decodes-shorter", "the decoder reads a whole instruction before the last byte",
     "  encoding:\n    - {byte: 0x66, role: prefix}\n    - {byte: 0x0f, role: escape}\n    - {byte: 0x01, role: opcode}\n    - {byte: 0xee, role: modrm}\n",
     "  encoding:\n    - {byte: 0x0f, role: escape}\n    - {byte: 0x01, role: opcode}\n"
     "    - {byte: 0xd0, role: modrm}\n    - «{byte: 0x90, role: immediate}\n",
     "byte 4 (0x90) follows a whole instruction: iced-x86 1.21.0 decodes 0F 01 D0 as xgetbv, "
     "and the rest would run as another instruction"),
    ("encoding-decodes-longer", "the decoder needs an immediate the spec does not give",
     "{byte: 0x01, role: opcode}\n    - {byte: 0xee, role: modrm}",
     "{byte: 0x71, role: opcode}\n    - {byte: 0xd0, role: modrm}",
     ""),  # the position is the encoding's: see MULTI
    ("encoding-known-instruction", "the bytes are another, known instruction",
     "  encoding:\n    - {byte: 0x66, role: prefix}\n    - {byte: 0x0f, role: escape}\n    - {byte: 0x01, role: opcode}\n    - {byte: 0xee, role: modrm}\n",
     "  encoding:\n    «- {byte: 0x0f, role: escape}\n    - {byte: 0x01, role: opcode}\n"
     "    - {byte: 0xd0, role: modrm}\n",
     "iced-x86 1.21.0 decodes 0F 01 D0 as xgetbv (an instruction user mode may run), not "
     "frobopt: the bytes are a known instruction under another name"),
    # limits, strict values and reserved names
    ("text-empty", "an output's description is empty",
     "      description: Return code\n", "      description: «\"\"\n",
     "text must not be empty"),
    ("cstring-blank", "a log message is only a space",
     "    log_message: Attempt frobbing on range", "    log_message: «' '",
     "message must not be empty"),
    ("name-gnu-keyword", "the raw helper is named as GNU C's asm keyword",
     "raw_helper: {name: __frobopt,", "raw_helper: {name: «__asm,",
     "'__asm' is a C keyword"),
    ("name-reserved", "the enum is named with an underscore and a capital",
     "enum: {name: frob_mode,", "enum: {name: «_Frob_mode,",
     "'_Frob_mode' is reserved in C: names that start with '_' and a capital, '__' and a "
     "capital, or start and end with '__' belong to the compiler"),
    ("name-builtin", "the helper is named as a compiler builtin",
     "helper: {name: frobopt,", "helper: {name: «__builtin_frob,",
     "'__builtin_frob' is reserved for the compiler's built-in functions"),
    ("int-over-64-bits", "a CPUID leaf of 2^64",
     "    leaf: 0x7", "    leaf: «18446744073709551616",
     "integer '18446744073709551616' does not fit 64 bits"),
    ("size-over-64-bits", "a region size of 16E",
     "    region_size: 2M", "    region_size: «16E",
     "size '16E' does not fit 64 bits"),
    ("yaml11-octal", "a table size written with a leading zero",
     "    entries: 512", "    entries: «01000",
     "'01000' is octal in YAML 1.1 (512) but decimal in YAML 1.2: write 0o1000 or 0x200, or "
     "1000 without the leading zero"),
    ("yaml11-base60", "a table size that YAML 1.1 reads in base 60",
     "    entries: 512", "    entries: «8:32",
     "'8:32' is a base-60 number in YAML 1.1: write a plain number (or quote it for text)"),
    ("yaml11-bool", "a retry flag written as yes",
     "value: 3, description: Busy, retry: true}", "value: 3, description: Busy, retry: «yes}",
     "'yes' is a boolean only in YAML 1.1: write true or false (or quote it for text)"),
    ("table-too-many-entries", "a table of 2^21 entries",
     "    entries: 512\n    coverage: 1G", "    entries: «2097152\n    coverage: 4T",
     "value 0x200000 is out of range 1..0x100000"),
    ("limit-nesting", "lists nested 40 deep",
     "  requires: [frob mode on]", "  requires: " + "[" * 30 + "«" + "[" * 10 + "]" * 40,
     "nested deeper than the limit of 32 levels"),
    ("limit-value-length", "a title of 4099 characters",
     "  title: Frobnicate Optimize", "  title: «>-\n" + "\n".join(["    " + "y" * 99] * 41),
     "a value of 4099 characters is longer than the limit of 4096"),
    ("limit-line-length", "a line of 4105 characters",
     "  title: Frobnicate Optimize", "  title: " + "y" * 4087 + "«" + "y" * 10,
     "line longer than the limit of 4096 characters (fold long text with '>-')"),
    ("enable-without-cpuid", "a sweep that must be enabled, without the CPUID feature to check",
     "  cpuid:\n    leaf: 0x7\n    subleaf: 1\n    register: ecx\n    bit: 5\n"
     "    feature: X86_FEATURE_FROB\n    word: 18\n    word_bit: 5\n",
     "", "kernel.enable needs instruction.cpuid: the feature setup checks before anything else"),
    ("enable-without-msr", "a sweep that must be enabled, without the MSR to program",
     "  msr:\n    name: MSR_FROB_BASE\n    number: 0x1234\n"
     "    enable: {name: MSR_FROB_ENABLE, bit: 1}\n    scope: core\n    value: base | enable\n"
     "    fault: UD\n    base: {low_bit: 21, high_bit: 47, description: Base of the frob table}\n",
     "", "kernel.enable needs instruction.msr: the MSR setup programs on every core"),
    ("enable-msr-without-scope", "the MSR does not say whether it is per core or per thread",
     "    scope: core\n", "",
     "kernel.enable needs instruction.msr.scope: whether each core or each thread has the MSR"),
    ("sweep-without-enable", "a sweep with nothing that checks the feature or programs the MSR",
     "  enable:\n    check: cpu_feature_enabled\n    mutex: frob_mutex\n"
     "    setup_caller: frob-core\n    trigger_caller: frob_user\n"
     "    teardown_caller: frob-core\n    msr_on_teardown: clear\n"
     "    hotplug: {state: CPUHP_AP_ONLINE_DYN, name: \"frob:online\"}\n", "",
     "a sweep needs kernel.enable: how setup checks the feature and programs the MSR before "
     "the first FROBOPT"),
    ("enable-bad-module", "a caller that is not a module name",
     "    trigger_caller: frob_user", "    trigger_caller: «Frob User",
     "'Frob User' is not a kernel module name (lower-case letters, digits, '_', '-')"),
    ("enable-mutex-name-clash", "the mutex has the sweep's name",
     "    mutex: frob_mutex", "    mutex: «frob_sweep",
     "kernel name 'frob_sweep' repeats (first at line {line:pass_name: frob_sweep})"),
    ("enable-without-sweep", "enabling with no sweep to guard",
     '  sweep:\n    source: arch/x86/kernel/frob.c\n    pass_name: frob_sweep\n    leader: current-cpu\n    cpus: primary-threads\n    followers: primary-threads-except-leader-siblings\n    resched: between-regions\n    log_message: Attempt frobbing on range\n    cap_message: Beyond the frob table\n    workers:\n      - {kind: kthread, name: frob_thread, trigger: frob_all, setup: frob_init, teardown: frob_exit}\n      - kind: delayed-work\n        name: frob_work\n        trigger: frob_all\n        setup: frob_init\n        teardown: frob_exit\n        workqueue: frob_wq\n        first_delay_ms: 5\n        rearm_delay_ms: 100\n', "", "kernel.enable belongs to a sweep: it has no worker to guard"),
    ("sweep-config-not-kconfig", "a Kconfig symbol without its CONFIG_ prefix",
     "    cap_message: Beyond the frob table\n",
     "    cap_message: Beyond the frob table\n    config: «FROB_CORE\n",
     "'FROB_CORE' is not a Kconfig symbol: write it as the preprocessor sees it, CONFIG_FROB_CORE"),
    ("out-of-line-unknown-input", "the kernel function's parameter carries an input that does not exist",
     '  raw_helper: {name: __frobopt, header: arch/x86/include/asm/frob.h, max_retries: 8}\n',
     '  raw_helper: {name: __frobopt, header: arch/x86/include/asm/frob.h, max_retries: 8}\n' "  out_of_line:\n    name: frob_pfn\n    source: arch/x86/kernel/frob.c\n"
     "    arguments: [{name: pfn, input: «base}, {name: mode, input: mode}, {name: desc, input: desc}]\n",
     "'base' is not an input (base_pa, mode, desc)"),
    ("out-of-line-input-not-passed", "the kernel function passes no parameter for one input",
     '  raw_helper: {name: __frobopt, header: arch/x86/include/asm/frob.h, max_retries: 8}\n',
     '  raw_helper: {name: __frobopt, header: arch/x86/include/asm/frob.h, max_retries: 8}\n' "  out_of_line:\n    name: frob_pfn\n    source: arch/x86/kernel/frob.c\n"
     "    arguments: «[{name: pfn, input: base_pa, shift: 12}, {name: mode, input: mode}]\n",
     "no parameter carries input 'desc': frob_pfn() would not pass it to the instruction"),
    ("out-of-line-shifted-pointer", "a pointer input shifted like a page frame number",
     '  raw_helper: {name: __frobopt, header: arch/x86/include/asm/frob.h, max_retries: 8}\n',
     '  raw_helper: {name: __frobopt, header: arch/x86/include/asm/frob.h, max_retries: 8}\n' "  out_of_line:\n    name: frob_pfn\n    source: arch/x86/kernel/frob.c\n"
     "    arguments: [{name: pfn, input: base_pa}, {name: mode, input: mode}, "
     "{name: desc, input: desc, shift: «12}]\n",
     "pointer input 'desc' cannot be shifted"),
    ("out-of-line-unknown-errno", "the failure errno is not one kgen knows",
     '  raw_helper: {name: __frobopt, header: arch/x86/include/asm/frob.h, max_retries: 8}\n',
     '  raw_helper: {name: __frobopt, header: arch/x86/include/asm/frob.h, max_retries: 8}\n' "  out_of_line:\n    name: frob_pfn\n    source: arch/x86/kernel/frob.c\n"
     "    arguments: [{name: pfn, input: base_pa}, {name: mode, input: mode}, {name: desc, input: desc}]\n"
     "    failure: «EFROB\n",
     "'EFROB' is not an errno kgen knows (EAGAIN, EBUSY, EFAULT, EINVAL, EIO, ENODEV, ENOENT, ENOMEM, ENOSPC, EPERM)"),
    # kernel.enable.requires: a prerequisite is a known check and one of its constants, no C
    ("prereq-check-unknown", "a prerequisite checked by a function kgen does not know",
     "    msr_on_teardown: clear\n", "    msr_on_teardown: clear\n    requires:\n      - {name: snp-host, check: «system, argument: CC_ATTR_HOST_SEV_SNP}\n",
     "expected one of 'cc_platform_has', got a string 'system'"),
    ("prereq-argument-c-text", "a prerequisite's argument is C text, not a constant",
     "    msr_on_teardown: clear\n", "    msr_on_teardown: clear\n    requires:\n      - {name: snp-host, check: cc_platform_has,\n         argument: «\"CC_ATTR_HOST_SEV_SNP) || (1\"}\n",
     "'CC_ATTR_HOST_SEV_SNP) || (1' is not a C identifier"),
    ("prereq-argument-other-enum", "a prerequisite's argument is not one of its check's constants",
     "    msr_on_teardown: clear\n", "    msr_on_teardown: clear\n    requires:\n      - {name: snp-host, check: cc_platform_has, argument: «X86_FEATURE_FROB}\n",
     "'X86_FEATURE_FROB' is not an argument of cc_platform_has(): its constants start with CC_ATTR_"),
    ("prereq-name-not-a-word", "a prerequisite's name is not a word a user can type",
     "    msr_on_teardown: clear\n", "    msr_on_teardown: clear\n    requires:\n      - {name: «SNP host, check: cc_platform_has, argument: CC_ATTR_HOST_SEV_SNP}\n",
     "'SNP host' is not a name: a lower-case letter, then lower-case letters, digits and '-', at most 32 in all"),
    ("prereq-name-repeats", "two prerequisites have one name",
     "    msr_on_teardown: clear\n", "    msr_on_teardown: clear\n    requires:\n      - {name: snp-host, check: cc_platform_has, argument: CC_ATTR_HOST_SEV_SNP}\n      - {name: «snp-host, check: cc_platform_has, argument: CC_ATTR_HOST_MEM_ENCRYPT}\n",
     "prerequisite name 'snp-host' repeats (first at line {line:name: snp-host})"),
    ("prereq-argument-missing", "a prerequisite without its argument",
     "    msr_on_teardown: clear\n", "    msr_on_teardown: clear\n    requires:\n      - «{name: snp-host, check: cc_platform_has}\n",
     "missing required key 'argument' in Prerequisite"),
    ("prereq-header-given", "a prerequisite names its header (kgen knows the check's header)",
     "    msr_on_teardown: clear\n", "    msr_on_teardown: clear\n    requires:\n      - {name: snp-host, check: cc_platform_has, argument: CC_ATTR_HOST_SEV_SNP,\n         «header: linux/cc_platform.h}\n",
     "unknown key 'header'; Prerequisite has: name, check, argument"),
    # kernel.enable.hotplug: the dynamic AP state whose callback enables a core that comes online
    ("hotplug-missing", "enabling without the CPU hotplug state that enables a core coming online",
     "    check: cpu_feature_enabled\n    mutex: frob_mutex\n    setup_caller: frob-core\n"
     "    trigger_caller: frob_user\n    teardown_caller: frob-core\n    msr_on_teardown: clear\n"
     "    hotplug: {state: CPUHP_AP_ONLINE_DYN, name: \"frob:online\"}\n",
     "    «check: cpu_feature_enabled\n    mutex: frob_mutex\n    setup_caller: frob-core\n"
     "    trigger_caller: frob_user\n    teardown_caller: frob-core\n    msr_on_teardown: clear\n",
     "missing required key 'hotplug' in Enable"),
    ("hotplug-state-not-dynamic", "a CPU hotplug state kgen does not know to run on the CPU coming online",
     "state: CPUHP_AP_ONLINE_DYN", "state: «CPUHP_BP_PREPARE_DYN",
     "expected one of 'CPUHP_AP_ONLINE_DYN', got a string 'CPUHP_BP_PREPARE_DYN' (did you mean "
     "'CPUHP_AP_ONLINE_DYN'?)"),
    ("hotplug-name-quote", "a CPU hotplug state name with a double quote",
     'name: "frob:online"', 'name: «"frob\\"online"',
     "message must not contain a double quote: it is written into a C format string"),
    ("yaml11-underscore", "a table size with a digit separator, which YAML 1.2 reads as text",
     "    entries: 512", "    entries: «5_12",
     "'5_12' is an integer only in YAML 1.1 (512): YAML 1.2 reads it as text; write 512 or "
     "0x200"),
    ("yaml11-binary", "a table size in binary, which YAML 1.2 reads as text",
     "    entries: 512", "    entries: «0b1000000000",
     "'0b1000000000' is an integer only in YAML 1.1 (512): YAML 1.2 reads it as text; write 512 "
     "or 0x200"),
    ("text-trigraph", "a description with a trigraph, which gcc -Wall warns of (or, at a line end, "
     "one that would continue the comment)",
     "      description: Frob mode\n", "      description: «Frob mode??/\n",
     "text must not contain the trigraph '??/': gcc warns of it in C (write '? ?/')"),
    ("cstring-trigraph", "a log message with a trigraph, which gcc -Wall warns of",
     "    cap_message: Beyond the frob table", "    cap_message: «Beyond the frob table??!",
     "message must not contain the trigraph '??!': gcc warns of it in C (write '? ?!')"),
    ("name-is-the-feature", "a software code named as the CPUID feature bit's #define",
     "software_code: {name: FROB_STALE,", "software_code: {name: «X86_FEATURE_FROB,",
     "kernel name 'X86_FEATURE_FROB' is also the name of the CPUID feature (line "
     "{line:feature: X86_FEATURE_FROB})"),
    ("name-is-the-msr-bit", "a return code named as the MSR's enable bit",
     "- {name: FROB_OK, value: 0,", "- {name: «MSR_FROB_ENABLE, value: 0,",
     "kernel name 'MSR_FROB_ENABLE' is also the name of the MSR's enable bit (line "
     "{line:enable: {name: MSR_FROB_ENABLE})"),
    ("name-is-a-kernel-macro", "a helper named as a macro of the kernel's headers",
     "helper: {name: frobopt,", "helper: {name: «current,",
     "'current' is a macro of the kernel's headers: the preprocessor would rewrite it wherever "
     "the code uses it"),
    ("input-is-a-kernel-macro", "an input named as a macro of the kernel's headers",
     "      name: base_pa\n", "      name: «likely\n",
     "'likely' is a macro of the kernel's headers: the preprocessor would rewrite it wherever "
     "the code uses it"),
]
# Defects whose expected text is not a single replacement.
SPECIAL = {
    "worker-no-workqueue": ("        workqueue: frob_wq\n", ""),
}
MULTI = {
    "enable-without-sweep": [("  enable:\n    «check:", "kernel.enable belongs to a sweep: it has no "
                              "worker to guard")],
    "enable-without-cpuid": [("    check: «cpu_feature_enabled", "kernel.enable needs instruction.cpuid: "
                              "the feature setup checks before anything else")],
    "enable-without-msr": [("  enable:\n    «check:", "kernel.enable needs instruction.msr: the MSR "
                            "setup programs on every core")],
    "enable-msr-without-scope": [("  msr:\n    «name:", "kernel.enable needs instruction.msr.scope: "
                                  "whether each core or each thread has the MSR")],
    "sweep-without-enable": [("  sweep:\n    «source:", "a sweep needs kernel.enable: how setup "
                              "checks the feature and programs the MSR before the first FROBOPT")],
    "encoding-decodes-longer": [
        ("  encoding:\n    «- {byte: 0x66", "iced-x86 1.21.0 reads 66 0F 71 D0 as the start of a "
         "longer instruction (a 5-byte psrlw when zero bytes follow): it would consume the bytes "
         "after the .byte line"),
    ],
    "key-missing-kernel": [
        ("«format: 1", "missing required key 'kernel' in Spec"),  # the document mapping
        ("«kernel_", "unknown key 'kernel_' (did you mean 'kernel'?); "
         "Spec has: format, instruction, kernel"),
    ],
    "input-pointer-no-target": [
        ("type: «pointer", "type 'pointer' and points_to go together"),
    ],
    "input-pointer-no-bytes": [
        ("type: «pointer", "type 'pointer' and bytes go together"),
    ],
    "output-flag-no-software-code": [
        ("    - flag: «zf", "a flag output beside a register output needs a software_code to return"),
        ("      type: «int\n      description: Set when",
         "a flag output without software_code is a bool"),
    ],
    "retry-unbounded": [
        ("raw_helper: «{name: __frobopt",
         "return code FROB_BUSY is retried: raw_helper needs max_retries to bound the loop"),
    ],
    "retry-limit-without-retry": [
        ("max_retries: «8", "max_retries without a retry code"),
    ],
    "worker-kind-repeats": [
        ("«kthread\n        name: frob_work", "worker kind 'kthread' repeats (first at line {line:{kind: kthread})"),
        ("workqueue: «frob_wq", "a kthread worker takes no 'workqueue'"),
        ("«5\n        rearm", "a kthread worker takes no 'first_delay_ms'"),
        ("«100", "a kthread worker takes no 'rearm_delay_ms'"),
    ],
}

HEADER_LINES = 2
LINE_OF = re.compile(r"\{line:([^}]*)\}")


def _lines_filled(message: str, text: str) -> str:
    """Replace each {line:TEXT} with the line where TEXT first stands in ``text``."""

    def line_of(m: re.Match) -> str:
        at = text.find(m.group(1))
        if at < 0:
            raise SystemExit(f"regen: {m.group(1)!r} does not occur")
        return str(text.count("\n", 0, at) + 1 + HEADER_LINES)

    return LINE_OF.sub(line_of, message)


def _position(text: str, needle: str) -> tuple[int, int]:
    """1-based line and column of the « in ``needle``, found in ``text``."""
    plain = needle.replace(MARK, "")
    at = text.find(plain)
    if at < 0 or text.find(plain, at + 1) >= 0:
        raise SystemExit(f"regen: position anchor {plain!r} must occur exactly once")
    offset = at + needle.index(MARK)
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line + HEADER_LINES, col


def build() -> dict[str, bytes]:
    base = (HERE / "_base.yaml").read_text()
    out: dict[str, bytes] = {}
    for n, (stem, what, old, new, message) in enumerate(DEFECTS, 1):
        if base.count(old) != 1:
            raise SystemExit(f"regen: {stem}: {old!r} must occur exactly once in _base.yaml")
        marked = base.replace(old, new)
        if stem in SPECIAL:
            marked = marked.replace(*SPECIAL[stem])
        text = marked.replace(MARK, "")
        expects = []
        if stem in MULTI:
            for anchor, msg in MULTI[stem]:
                if MARK in anchor:
                    line, col = _position(text, anchor)
                else:
                    line, col = (int(x) for x in anchor.split(":"))
                expects.append(f"{line}:{col}: {_lines_filled(msg, text)}")
        else:
            if MARK not in marked:
                raise SystemExit(f"regen: {stem}: the new text has no {MARK} position mark")
            offset = marked.index(MARK)
            line = marked.count("\n", 0, offset) + 1 + HEADER_LINES
            col = offset - (marked.rfind("\n", 0, offset) + 1) + 1
            expects.append(f"{line}:{col}: {_lines_filled(message, text)}")
        header = f"# defect: {what}\n# expect: " + " | ".join(expects) + "\n"
        if HEADER_LINES != 2:  # the header is two lines; keep the arithmetic honest
            raise AssertionError
        out[f"{n:02d}-{stem}.yaml"] = (header + text).encode()
    # A spec must be UTF-8: one byte that is not, at a known place.
    bad = b"# defect: a byte that is not UTF-8\n# expect: 3:1: file is not valid UTF-8\n\xff\n"
    out[f"{len(DEFECTS) + 1:02d}-not-utf8.yaml"] = bad
    out[f"{len(DEFECTS) + 2:02d}-empty.yaml"] = (
        b"# defect: the spec is empty\n# expect: 1:1: the spec is empty\n"
    )
    return out


def main() -> int:
    files = build()
    for old in HERE.glob("[0-9]*-*.yaml"):
        if old.name not in files:
            old.unlink()
    for name, data in files.items():
        (HERE / name).write_bytes(data)
    print(f"wrote {len(files)} broken specs to {HERE}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

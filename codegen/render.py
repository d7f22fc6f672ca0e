"""Render kernel C from a spec with the Jinja templates in ``templates/``.

Rendering is pure: :func:`render_spec` maps a spec to ``{relative path: text}``
and the same spec always gives the same bytes.  Values reach the C text only
through the filters below, which format them (hex literals, ``SZ_*``
constants, checked identifiers, wrapped comment text); a template that prints
a raw value fails to render.  Writing is separate and atomic
(:func:`write_tree`).
"""

from __future__ import annotations

import difflib
import errno
import hashlib
import os
import re
import secrets
import signal
import stat
import subprocess
import textwrap
import traceback
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Iterable

import jinja2

from . import __version__
from .model import CONSTRAINT_LETTER, Spec, Worker
from .diagnostics import quote, shown_path
from .spec import retry_limit_name, text_problem

def _templates_dir() -> Path:
    """templates/ of the checkout, or the copy an installed package carries."""
    here = Path(__file__).resolve().parent
    for candidate in (here.parent / "templates", here / "templates"):
        if (candidate / "helpers.h.j2").is_file():
            return candidate
    return here.parent / "templates"


TEMPLATES = _templates_dir()
LINE_LIMIT = 100

_SIZE_SUFFIX = ((40, "T"), (30, "G"), (20, "M"), (10, "K"), (0, ""))


class RenderError(Exception):
    """A spec value that the templates cannot express, or a template bug."""


class C(str):
    """Text already formatted for C; the only kind of value a template may print."""


def _c(text: str) -> C:
    return C(text)


def f_hex(value: int, digits: int = 0) -> C:
    return _c(f"0x{value:0{digits}x}")


def _checked(kind: str, value: str) -> str:
    """``value`` if it keeps the loader's character rule ``kind``; a RenderError if not."""
    why = text_problem(kind, value)
    if why:
        raise RenderError(why)
    return value


def f_ident(value: str) -> C:
    return _c(_checked("identifier", value))


def f_upper_ident(value: str) -> C:
    return f_ident(value.upper())


def f_sz(value: int) -> C:
    """A power-of-two size as the kernel's <linux/sizes.h> constant (SZ_1G, SZ_2T, ...)."""
    if value <= 0 or value & (value - 1):
        raise RenderError(f"{value:#x} is not a power of two: no SZ_ constant names it")
    shift = value.bit_length() - 1
    for unit_shift, unit in _SIZE_SUFFIX:
        if shift >= unit_shift and (unit_shift == 40 or shift - unit_shift < 10):
            return _c(f"SZ_{1 << (shift - unit_shift)}{unit}")
    raise AssertionError(value)


def f_human_size(value: int) -> C:
    """1 << 30 -> '1 GB', for comments."""
    name = f_sz(value)[3:]
    return _c(f"{name[:-1]} {name[-1]}B" if name[-1].isalpha() else f"{name} bytes")


def f_byte_directive(encoding: Iterable[Any]) -> C:
    return _c(".byte " + ", ".join(f"0x{b.byte:02x}" for b in encoding))


def f_byte_text(encoding: Iterable[Any]) -> C:
    return _c(" ".join(f"{b.byte:02X}" for b in encoding))


def f_register(name: str) -> C:
    return _c(name.upper())


def _constraint_letter(register: str) -> str:
    if register not in CONSTRAINT_LETTER:
        raise RenderError(f"register {register} has no asm constraint letter")
    return CONSTRAINT_LETTER[register]


def f_input_constraint(register: str) -> C:
    return _c(f'"{_constraint_letter(register)}"')


def f_flag_constraint(flag: str) -> C:
    return _c(f'"=@cc{flag[0]}"')


def f_cstring(value: str) -> C:
    return _c(_checked("c-string", value))


def f_comment(value: str, first: str = "", indent: str = " * ", width: int = LINE_LIMIT) -> C:
    """Wrap prose into comment lines: ``first`` starts the first line, ``indent`` the rest.

    Tabs count as 8 columns, as the kernel's 100-column rule counts them.
    """
    words = _checked("comment", value).split()
    cols = width - len(indent.expandtabs(8))
    return _c(("\n" + indent).join(wrap_words(words, cols, first)))


def wrap_words(words: list[str], width: int, first: str = "") -> list[str]:
    """The lines of ``textwrap.wrap(" ".join(words), width, initial_indent=first,
    break_on_hyphens=False)``, in time linear in the text.

    textwrap copies the rest of a word too long for a line each time it breaks it,
    which is quadratic in the word's length.  Here a long word is consumed through
    an offset instead; every other step is textwrap's.
    """
    chunks: list[str] = []  # words and the single spaces between them, as textwrap splits
    for word in reversed(words):
        if chunks:
            chunks.append(" ")
        chunks.append(word)
    used = 0  # characters of chunks[-1] already placed on earlier lines
    lines: list[str] = []
    while chunks:
        indent = first if not lines else ""
        room = width - len(indent)
        if lines and (chunks[-1] == " " or used == len(chunks[-1])):
            chunks.pop()  # a line does not start with the space, or the empty rest, left over
            used = 0
        line: list[str] = []
        size = 0
        while chunks and size + len(chunks[-1]) - used <= room:
            line.append(chunks.pop()[used:])
            size += len(line[-1])
            used = 0
        if chunks and len(chunks[-1]) - used > room:  # a word longer than a line: break it
            take = 1 if room < 1 else room - size
            line.append(chunks[-1][used : used + take])
            used += take
        if line and not line[-1].strip():
            line.pop()
        if line:
            lines.append(indent + "".join(line))
    return lines


def f_dec(value: int) -> C:
    return _c(str(value))


def f_tab(text: str, depth: int = 1) -> str:
    """Indent every non-empty line of a rendered block by ``depth`` tabs."""
    pad = "\t" * depth
    return "".join(pad + line if line.strip() else line for line in text.splitlines(True))


def f_duration(ms: int) -> C:
    """10000 -> '10 s', for comments."""
    return _c(f"{ms // 1000} s" if ms % 1000 == 0 and ms else f"{ms} ms")


FILTERS = {
    "hex": f_hex,
    "ident": f_ident,
    "upper_ident": f_upper_ident,
    "sz": f_sz,
    "human_size": f_human_size,
    "byte_directive": f_byte_directive,
    "byte_text": f_byte_text,
    "register": f_register,
    "input_constraint": f_input_constraint,
    "flag_constraint": f_flag_constraint,
    "cstring": f_cstring,
    "comment": f_comment,
    "ms": f_dec,
    "dec": f_dec,
    "duration": f_duration,
}


def _strict(fn):
    """Let a filter fail as StrictUndefined does when any argument is undefined."""

    def filter_(*args: Any, **kwargs: Any) -> C:
        for arg in (*args, *kwargs.values()):
            if isinstance(arg, jinja2.Undefined):
                arg._fail_with_undefined_error()
        return fn(*args, **kwargs)

    return filter_


def _finalize(value: Any) -> Any:
    if isinstance(value, C):
        return value
    raise RenderError(f"a template printed {value!r} without a formatting filter")


def environment(templates: Path = TEMPLATES) -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates)),
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=_finalize,
    )
    env.filters.update({name: _strict(fn) for name, fn in FILTERS.items()})
    env.filters["tab"] = f_tab  # a block filter: its text was formatted already
    return env


@dataclass(frozen=True)
class Output:
    """One generated file: where it is written and where it goes in a kernel tree."""

    path: str  # relative to the output directory
    template: str
    destination: str  # kernel file the fragment belongs in
    worker: Worker | None = None


BANNER_NAME_LIMIT = 80


def spec_display_path(spec: Spec) -> str:
    """The spec as the banner names it: its file name, the same from any directory."""
    return PurePosixPath(spec.path).name


def f_banner_name(name: str) -> C:
    """A spec's file name, checked to be inert and short in a C comment."""
    why = None
    bad = next((c for c in name if not c.isprintable()), None)
    if bad is not None:
        why = f"it holds the control character {bad!r}"
    elif not name.isascii():
        why = "it is not ASCII"
    elif "/*" in name or "*/" in name:
        why = "it holds '/*' or '*/', which would end the C comment"
    elif len(name) > BANNER_NAME_LIMIT:
        why = f"it is too long ({len(name)} characters; at most {BANNER_NAME_LIMIT})"
    if why:
        raise RenderError(f"the spec's file name {quote(name)} cannot be shown in the banner of "
                          f"the generated C: {why}; rename the file")  # fmt: skip
    return _c(name)


def include_split(header: str) -> tuple[str, str]:
    """'arch/x86/include/asm/x.h' -> ('arch/x86/include', 'asm/x.h'): the -I dir and #include name."""
    parts = PurePosixPath(header).parts
    if "include" not in parts[:-1]:
        return str(PurePosixPath(header).parent), PurePosixPath(header).name
    at = len(parts) - 1 - parts[::-1].index("include")
    return "/".join(parts[:at + 1]), "/".join(parts[at + 1 :])


def outputs(spec: Spec) -> list[Output]:
    k = spec.kernel
    root = PurePosixPath(spec.instruction.mnemonic)
    files = [Output(str(root / k.raw_helper.header), "helpers.h.j2", k.raw_helper.header)]
    if k.sweep is not None:
        src = PurePosixPath(k.sweep.source)
        for w in k.sweep.workers:
            name = f"{src.stem}-{w.kind}{src.suffix}"
            files.append(Output(str(root / src.parent / name), "sweep.c.j2", k.sweep.source, w))
    return files


@dataclass(frozen=True)
class RawShape:
    """The C shape of the low-level helper: what it takes, returns and defines."""

    ret: C  # return type
    params: C  # parameter declarations
    structs: tuple[C, ...]  # structs its pointer parameters need declared
    defines: tuple[C, ...]  # constant lines (comments and #defines), aligned
    rc: Any  # the register output the helper returns, or None
    flags: tuple[Any, ...]  # flag outputs
    retry: tuple[C, ...]  # return codes the helper re-executes on
    retry_limit: C | None  # the constant bounding the retries
    retry_while: C | None  # the do-while condition of the retry loop
    outputs: C  # asm output operands
    inputs: C  # asm input operands
    clobbers: C


_C_TYPES = {"u8", "u16", "u32", "u64", "bool", "int", "unsigned long"}


def c_parameter(i: Any) -> C:
    """``u64 pa_start``, ``bool validate`` or ``struct rmp_state *state``."""
    if i.type == "pointer":
        return _c(f"struct {f_ident(i.points_to)} *{f_ident(i.name)}")
    if i.type not in _C_TYPES:
        raise RenderError(f"input type {i.type} has no C spelling")
    return _c(f"{i.type} {f_ident(i.name)}")


def _comment_line(text: str) -> str:
    one = f"/* {' '.join(_checked('comment', text).split())} */"
    if len(one) <= LINE_LIMIT:
        return one
    return "/*\n * " + f_comment(text) + "\n */"


def raw_shape(spec: Spec) -> RawShape:
    insn, raw = spec.instruction, spec.kernel.raw_helper
    rc = insn.return_output()
    flags = tuple(o for o in insn.outputs if o.flag)
    entries: list[tuple[str, str, int]] = []  # (comment, name, value)
    mnemonic = insn.mnemonic.upper()
    if rc is not None:
        for c in rc.codes:
            entries.append((f"{mnemonic} return code in {rc.register.upper()}: {c.description}",
                            c.name, c.value))  # fmt: skip
    for o in flags:
        if o.software_code:
            sc = o.software_code
            entries.append((f"Software defined, {mnemonic} set RFLAGS.{o.flag.upper()}: "
                            f"{sc.description}", sc.name, sc.value))  # fmt: skip
    retry = tuple(f_ident(c.name) for c in (rc.codes if rc else ()) if c.retry)
    limit = None
    if retry and raw.max_retries is not None:
        limit = f_ident(retry_limit_name(spec))
        entries.append((f"Times {raw.name}() re-executes {mnemonic} on a retry code", limit,
                        raw.max_retries))  # fmt: skip
    width = max((len(f"#define {name}") for _, name, _ in entries), default=0)
    stop = (width // 8 + 1) * 8
    defines = []
    for comment, name, value in entries:
        head = f"#define {f_ident(name)}"
        tabs = "\t" * (stop // 8 - len(head) // 8)
        defines.append(_c(f"{_comment_line(comment)}\n{head}{tabs}{f_dec(value)}"))
    structs = tuple(dict.fromkeys(f_ident(i.points_to) for i in insn.inputs if i.points_to))
    outs = [f"{f_flag_constraint(o.flag)} ({f_ident(o.name)})" for o in flags]
    if rc is not None:
        outs.append(f'"={_constraint_letter(rc.register)}" ({f_ident(rc.name)})')
    ins = [f"{f_input_constraint(i.register)} ({f_ident(i.name)})" for i in insn.inputs]
    clobbers = ", ".join(f'"{f_ident(c)}"' for c in insn.clobbers)
    retry_while = None
    if limit:
        test = " || ".join(f"{f_ident(rc.name)} == {name}" for name in retry)
        test = f"({test})" if len(retry) > 1 else test
        retry_while = _c(f"{test} && retries++ < {limit}")
    if rc is not None:
        ret = _c(rc.type)
    elif flags:
        ret = _c("bool")
    else:
        ret = _c("void")
    return RawShape(
        ret, _c(", ".join(c_parameter(i) for i in insn.inputs)), structs, tuple(defines), rc, flags,
        retry, limit, retry_while, _c(", ".join(outs)), _c(", ".join(ins)), _c(clobbers),
    )  # fmt: skip


def spec_digest(source: str | bytes) -> str:
    """The hash prefix a banner shows: of the spec file's bytes."""
    data = source.encode() if isinstance(source, str) else source
    return hashlib.sha256(data).hexdigest()[:DIGEST_LEN]


def banner_context(spec: Spec, out: Output) -> dict[str, C]:
    name = f_banner_name(spec_display_path(spec))
    text = f"Generated by kgen {__version__} from {name} (sha256 {spec_digest(spec.source)}); do not edit."
    lines = textwrap.wrap(text, LINE_LIMIT - len(" * "), break_long_words=False,
                          break_on_hyphens=False)  # fmt: skip
    return {
        "generated_by": _c("\n * ".join(lines)),
        "destination": _c(out.destination),
        # the kernel's license-rules.rst: C sources take //, headers /* */
        "spdx": _c(
            "// SPDX-License-Identifier: GPL-2.0-only"
            if out.destination.endswith(".c")
            else "/* SPDX-License-Identifier: GPL-2.0-only */"
        ),
    }


def _template_place(exc: jinja2.TemplateError, template: str) -> str:
    """``file:line`` of a template error: a syntax error carries it, a runtime error
    (an undefined value, a failed filter) only in its traceback's template frames."""
    name = getattr(exc, "filename", None) or template
    line = getattr(exc, "lineno", None)
    if line is None:
        frames = [f for f in traceback.extract_tb(exc.__traceback__) if f.filename.endswith(name)]
        line = frames[-1].lineno if frames else "?"
    return f"{Path(name).name}:{line}"


def render_spec(spec: Spec, templates: Path = TEMPLATES) -> dict[str, str]:
    """Every generated file of one spec, as ``{relative path: text}``."""
    env = environment(templates)
    insn, k = spec.instruction, spec.kernel
    result = {}
    check_paths(o.path for o in outputs(spec))
    for out in outputs(spec):
        context = {
            "insn": insn,
            "kernel": k,
            "sweep": k.sweep,
            "worker": out.worker,
            "header_include": _c(include_split(k.raw_helper.header)[1]),
            "raw": raw_shape(spec),
            "enum_const": (
                {c.name: f_ident(k.enum.prefix + c.name.upper()) for c in insn.function_codes.codes}
                if k.enum and insn.function_codes
                else {}
            ),
            **banner_context(spec, out),
        }
        try:
            text = env.get_template(out.template).render(context)
        except jinja2.TemplateError as exc:
            raise RenderError(f"{_template_place(exc, out.template)}: {exc.message}") from None
        check_layout(out.path, text)
        result[out.path] = text
    return result


def check_paths(paths: Iterable[str]) -> None:
    """Each output path names one file, and no output sits where another one's directory is."""
    seen: set[str] = set()
    dirs: dict[str, str] = {}
    for path in paths:
        if path in seen:
            raise RenderError(f"two outputs are both written to {path}")
        seen.add(path)
        parts = path.split("/")
        for i in range(1, len(parts)):
            dirs.setdefault("/".join(parts[:i]), path)
    for path in sorted(seen):
        if path in dirs:
            raise RenderError(f"{path} would be both a file and the directory of {dirs[path]}")


def render_all(specs: Iterable[Spec], templates: Path = TEMPLATES) -> dict[str, str]:
    """Every generated file of the specs; a RenderError names the spec (``spec_path``)."""
    files: dict[str, str] = {}
    for spec in specs:
        try:
            rendered = render_spec(spec, templates)
            for path, text in rendered.items():
                if path in files:
                    raise RenderError(f"two specs render {path}")
                files[path] = text
            check_paths(files)
        except RenderError as exc:
            exc.spec_path = spec.path
            raise
    return files


def check_layout(path: str, text: str) -> None:
    """Kernel layout rules every generated file keeps."""
    for n, line in enumerate(text.splitlines(), 1):
        # as checkpatch does, a user-visible string may run past the limit if it starts within it
        head = line.split('"', 1)[0]
        if len(head.expandtabs(8)) > LINE_LIMIT:
            raise RenderError(f"{path}:{n}: line longer than {LINE_LIMIT} columns")
        if line != line.rstrip():
            raise RenderError(f"{path}:{n}: trailing whitespace")
    if not text.endswith("\n") or text.endswith("\n\n"):
        raise RenderError(f"{path}: must end with exactly one newline")


# --- the output tree --------------------------------------------------------
#
# kgen writes only the exact paths its specs render, replaces a file there only
# when it carries kgen's banner, removes nothing unless asked (--prune) and
# then only a file it can reproduce byte for byte, and never follows a link or
# opens anything but a regular file below the output directory.


TEMP_PREFIX = ".kgen-tmp-"
DIGEST_LEN = 12
BANNER_MARK = "Generated by kgen "
_BANNER = re.compile(
    r"Generated by kgen (\S+) from (.+?) \(sha256 ([0-9a-f]{%d})\); do not edit\." % DIGEST_LEN
)
_FRAGMENT = re.compile(r" Fragment of (\S+) in a Linux kernel tree\.")
_SNIFF = 4096  # bytes of a stray file read to find its banner
_DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_READ_FLAGS = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_NEW_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC
_SIGNALS = {signal.SIGINT, signal.SIGTERM}


class TreeError(Exception):
    """A file below the output directory that kgen must not or cannot touch."""

    def __init__(self, path: Path | str, message: str):
        self.path = str(path)
        self.message = message
        super().__init__(f"{shown_path(self.path)}: error: {message}")


@dataclass(frozen=True)
class Banner:
    """What a generated file's banner says: kgen's version, the spec's name and hash."""

    version: str
    spec: str  # the spec's file name (kgen before 0.1.0 wrote its path)
    digest: str
    destination: str | None = None  # the kernel file the fragment belongs in

    def could_be_at(self, rel: str) -> bool:
        """Whether kgen puts a fragment of this destination at ``rel``: <mnemonic>/<dir>/<file>,
        the file the destination's or its stem with a worker suffix."""
        mnemonic, _, inner_text = rel.partition("/")
        if not inner_text or not self.destination:
            return False
        inner, dest = PurePosixPath(inner_text), PurePosixPath(self.destination)
        return (inner.parent == dest.parent and inner.suffix == dest.suffix
                and inner.name.startswith(dest.stem))  # fmt: skip


def parse_banner(data: bytes) -> Banner | None:
    """The banner of a file kgen wrote: a first line, then a ``/*`` block naming kgen."""
    head = data[:_SNIFF].replace(b"\r\n", b"\n").replace(b"\r", b"\n")  # a copy is still kgen's
    lines = head.decode("ascii", errors="replace").split("\n")
    if len(lines) < 3 or lines[1] != "/*":
        return None
    text = []
    for line in lines[2:8]:
        if not line.startswith(" * "):
            break
        text.append(line[3:])
    joined = " ".join(text)
    m = _BANNER.match(joined)
    if not m:
        return None
    dest = _FRAGMENT.search(joined, m.end())
    return Banner(*m.groups(), dest.group(1) if dest else None)


@dataclass(frozen=True)
class Stale:
    """A file with kgen's banner below the output directory that no current spec renders."""

    path: str  # relative posix path
    banner: Banner


@contextmanager
def _signals_blocked():
    """Hold SIGINT and SIGTERM while files are swapped; they arrive when it is done."""
    try:
        old = signal.pthread_sigmask(signal.SIG_BLOCK, _SIGNALS)
    except (ValueError, OSError):  # pragma: no cover - not the main thread's business
        old = None
    try:
        yield
    finally:
        if old is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, old)


class _Tree:
    """Directories below ``root``, opened one component at a time without following links."""

    def __init__(self, root: Path):
        self.root = root
        self.fds: dict[str, int] = {}
        self.created: list[str] = []  # directories kgen made, parents first
        self.created_root: list[Path] = []

    def close(self) -> None:
        for fd in self.fds.values():
            os.close(fd)
        self.fds.clear()

    def path(self, rel: str) -> Path:
        return self.root / rel if rel else self.root

    def refusal(self, dir_fd: int, name: str, rel: str, exc: OSError, verb: str) -> TreeError:
        """Why ``name`` could not be opened: a link, not a directory, or the OS's reason."""
        try:
            st = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
        except OSError:
            st = None
        if st is not None and stat.S_ISLNK(st.st_mode):
            return TreeError(self.path(rel), "is a symbolic link: kgen does not follow links below "
                                             "its output directory")  # fmt: skip
        if st is not None and exc.errno == errno.ENOTDIR:
            return TreeError(self.path(rel), "is not a directory")
        return TreeError(self.path(rel), f"{verb}: {exc.strerror}")

    def _root(self, create: bool) -> int | None:
        """The output directory itself: the one path kgen follows if it is a link."""
        try:
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except FileNotFoundError:
            if not create:
                return None
        except OSError as exc:
            raise TreeError(self.root, f"cannot open the output directory: {exc.strerror}") from None
        missing = []
        for p in (self.root, *self.root.parents):
            if os.path.lexists(p):
                break
            missing.append(p)
        try:
            for p in reversed(missing):
                os.mkdir(p)
                self.created_root.append(p)
            return os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            raise TreeError(self.root, f"cannot create the output directory: {exc.strerror}") from None

    def dir(self, rel: str, create: bool = False) -> int | None:
        """The directory ``rel`` ('' for the root), or None when it does not exist."""
        if rel in self.fds:
            return self.fds[rel]
        if not rel:
            fd = self._root(create)
        else:
            parent_rel, _, name = rel.rpartition("/")
            parent = self.dir(parent_rel, create)
            if parent is None:
                return None
            try:
                fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
            except FileNotFoundError:
                if not create:
                    return None
                try:
                    os.mkdir(name, 0o777, dir_fd=parent)
                    self.created.append(rel)
                    fd = os.open(name, _DIR_FLAGS, dir_fd=parent)
                except OSError as exc:
                    raise self.refusal(parent, name, rel, exc, "cannot create the directory") from None
            except OSError as exc:
                raise self.refusal(parent, name, rel, exc, "cannot open") from None
        if fd is not None:
            self.fds[rel] = fd
        return fd

    def read(self, rel: str) -> tuple[bytes, int] | None:
        """Bytes and mode of the regular file ``rel``, or None when there is none."""
        parent_rel, _, name = rel.rpartition("/")
        parent = self.dir(parent_rel)
        if parent is None:
            return None
        try:
            st = os.stat(name, dir_fd=parent, follow_symlinks=False)
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise TreeError(self.path(rel), f"cannot read: {exc.strerror}") from None
        if stat.S_ISLNK(st.st_mode):
            raise self.refusal(parent, name, rel, OSError(errno.ELOOP, ""), "cannot read")
        if not stat.S_ISREG(st.st_mode):
            raise TreeError(self.path(rel), "is not a regular file: kgen reads and writes only "
                                            "regular files")  # fmt: skip
        try:
            fd = os.open(name, _READ_FLAGS, dir_fd=parent)
        except OSError as exc:
            raise self.refusal(parent, name, rel, exc, "cannot read") from None
        try:
            st = os.fstat(fd)
            if not stat.S_ISREG(st.st_mode):
                raise TreeError(self.path(rel), "is not a regular file")
            chunks = []
            while chunk := os.read(fd, 1 << 16):
                chunks.append(chunk)
            return b"".join(chunks), stat.S_IMODE(st.st_mode)
        except OSError as exc:
            raise TreeError(self.path(rel), f"cannot read: {exc.strerror}") from None
        finally:
            os.close(fd)

    def remove_created(self) -> None:
        """Remove the directories this run made, if they are still empty."""
        for rel in reversed(self.created):
            parent_rel, _, name = rel.rpartition("/")
            fd = self.fds.pop(rel, None)
            if fd is not None:
                os.close(fd)
            try:
                os.rmdir(name, dir_fd=self.fds[parent_rel])
            except OSError:
                pass
        self.created.clear()
        for p in reversed(self.created_root):
            try:
                os.rmdir(p)
            except OSError:
                pass
        self.created_root.clear()


def _sniff(dir_fd: int, name: str) -> Banner | None:
    """The banner of a stray regular file, or None; links, special files and errors are skipped."""
    try:
        if not stat.S_ISREG(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode):
            return None
        fd = os.open(name, _READ_FLAGS, dir_fd=dir_fd)
    except OSError:
        return None
    try:
        return parse_banner(os.read(fd, _SNIFF)) if stat.S_ISREG(os.fstat(fd).st_mode) else None
    except OSError:
        return None
    finally:
        os.close(fd)


def stale_files(root: Path, expected: Iterable[str], scope: Iterable[str] | None = None) -> list[Stale]:
    """Files below ``root`` with kgen's banner that are not in ``expected``.

    Only a file where kgen would put a fragment of the kernel file its banner
    names counts (``<mnemonic>/arch/...``), so another tree of generated files
    below ``root`` is not taken for one.  Links below ``root`` are never
    followed, only regular files are opened, hidden entries (temporary files,
    .git) are skipped.  ``scope`` limits the search to those top-level
    directories (one per spec: its mnemonic).
    """
    expected = set(expected)
    scope = None if scope is None else set(scope)
    found: list[Stale] = []
    if not root.is_dir():
        return found
    top = os.path.realpath(root)  # --out itself may be a link
    for dirpath, dirnames, filenames, dir_fd in os.fwalk(top, follow_symlinks=False):
        rel_dir = Path(dirpath).relative_to(top).as_posix()
        rel_dir = "" if rel_dir == "." else rel_dir
        dirnames[:] = sorted(d for d in dirnames if not d.startswith(".")
                             and (rel_dir or scope is None or d in scope))  # fmt: skip
        if not rel_dir and scope is not None:
            continue
        for name in sorted(filenames):
            rel = f"{rel_dir}/{name}" if rel_dir else name
            if name.startswith(".") or rel in expected:
                continue
            banner = _sniff(dir_fd, name)
            if banner is not None and banner.could_be_at(rel):
                found.append(Stale(rel, banner))
    return found


def read_tree(root: Path, scope: Iterable[str] | None = None) -> dict[str, str]:
    """Files with kgen's banner below ``root``, as ``{relative posix path: text}``.

    Links are never followed and only regular files are read; see
    :func:`stale_files` for ``scope``.
    """
    tree = _Tree(root)
    try:
        result = {}
        for s in stale_files(root, (), scope):
            try:
                got = tree.read(s.path)
            except TreeError:
                continue
            if got is not None:
                result[s.path] = got[0].decode(errors="replace")
        return result
    finally:
        tree.close()


@dataclass
class Drift:
    """How the output directory differs from a fresh render."""

    diffs: list[str]  # one unified diff per differing file
    problems: list[TreeError]  # files that could not be compared
    stale: list[Stale]


def _line_endings_only(old: bytes, new: bytes) -> bool:
    return old.replace(b"\r\n", b"\n").replace(b"\r", b"\n") == new


def drift(expected: dict[str, str], root: Path, scope: Iterable[str] | None = None) -> Drift:
    """Compare the exact bytes of every file a render writes; list stale generated files."""
    tree = _Tree(root)
    result = Drift([], [], [])
    try:
        for path, text in sorted(expected.items()):
            new = text.encode()
            try:
                got = tree.read(path)
            except TreeError as exc:
                if str(exc) not in map(str, result.problems):  # a linked directory: once
                    result.problems.append(exc)
                continue
            old = None if got is None else got[0]
            if old == new:
                continue
            a = f"a/{root.name}/{path}" if old is not None else "/dev/null"
            b = f"b/{root.name}/{path}"
            if old is not None and _line_endings_only(old, new):
                result.diffs.append(f"--- {a}\n+++ {b}\n@@ line endings differ: the file has CR or "
                                    "CRLF line endings, kgen writes LF @@\n")  # fmt: skip
                continue
            result.diffs.append("".join(difflib.unified_diff(
                (old or b"").decode(errors="replace").splitlines(keepends=True),
                text.splitlines(keepends=True), fromfile=a, tofile=b,
            )))  # fmt: skip
    finally:
        tree.close()
    result.stale = stale_files(root, expected, scope)
    return result


@dataclass
class _Staged:
    rel: str
    dir_fd: int
    name: str
    temp: str
    old: tuple[bytes, int] | None
    backup: str | None = None


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view):]


def _temp_name(name: str, kind: str = "new") -> str:
    return f"{TEMP_PREFIX}{name}.{kind}.{secrets.token_hex(4)}"


def _sweep_temps(tree: _Tree, dirs: Iterable[str]) -> None:
    """Remove temporary files an interrupted run left (SIGKILL) in the directories kgen writes."""
    for rel in sorted(set(dirs)):
        fd = tree.dir(rel)
        if fd is None:
            continue
        try:
            with os.scandir(fd) as entries:
                names = [e.name for e in entries
                         if e.name.startswith(TEMP_PREFIX) and e.is_file(follow_symlinks=False)]  # fmt: skip
        except OSError:
            continue
        for name in names:
            try:
                os.unlink(name, dir_fd=fd)
            except OSError:
                pass


def write_tree(files: dict[str, str], root: Path) -> list[str]:
    """Write ``files`` below ``root``, all or nothing; returns the paths that changed.

    A file is written only where a render puts it, and replaced only when it
    carries kgen's banner; nothing is removed.  Every changed file is first
    written to a temporary file beside it (named ``.kgen-tmp-*``), then all are
    renamed into place; when anything fails or the run is interrupted, every
    file is put back as it was and the temporary files are removed.  New files
    take their mode from the umask, a replaced file keeps its own.
    """
    tree = _Tree(root)
    try:
        plan = []
        for rel, text in sorted(files.items()):
            data = text.encode()
            old = tree.read(rel)
            if old is not None and old[0] == data:
                continue
            if old is not None and parse_banner(old[0]) is None:
                raise TreeError(tree.path(rel), "exists and was not written by kgen (it has no kgen "
                                                "banner): kgen does not overwrite it; move it away")  # fmt: skip
            plan.append((rel, data, old))
        _sweep_temps(tree, (rel.rpartition("/")[0] for rel in files))
        staged = _stage(tree, plan)
        _commit(tree, staged)
        return [rel for rel, _, _ in plan]
    finally:
        tree.close()


def _stage(tree: _Tree, plan: list[tuple[str, bytes, tuple[bytes, int] | None]]) -> list[_Staged]:
    staged: list[_Staged] = []
    try:
        for rel, data, old in plan:
            parent_rel, _, name = rel.rpartition("/")
            dir_fd = tree.dir(parent_rel, create=True)
            item = _Staged(rel, dir_fd, name, _temp_name(name), old)
            try:
                fd = os.open(item.temp, _NEW_FLAGS, 0o666, dir_fd=dir_fd)
            except OSError as exc:
                raise TreeError(tree.path(rel), f"cannot write: {exc.strerror}") from None
            staged.append(item)
            try:
                if old is not None:
                    os.fchmod(fd, old[1])
                _write_all(fd, data)
                os.fsync(fd)
            except OSError as exc:
                raise TreeError(tree.path(rel), f"cannot write: {exc.strerror}") from None
            finally:
                os.close(fd)
    except BaseException:
        with _signals_blocked():
            _discard(staged)
            tree.remove_created()
        raise
    return staged


def _discard(staged: list[_Staged]) -> None:
    for item in staged:
        for name in (item.temp, item.backup):
            if name:
                try:
                    os.unlink(name, dir_fd=item.dir_fd)
                except OSError:
                    pass


def _backup(tree: _Tree, item: _Staged) -> None:
    """Keep the file being replaced under a temporary name, to put it back on failure."""
    item.backup = _temp_name(item.name, "old")
    try:
        os.link(item.name, item.backup, src_dir_fd=item.dir_fd, dst_dir_fd=item.dir_fd,
                follow_symlinks=False)  # fmt: skip
    except OSError:  # a file system without hard links: a copy
        fd = os.open(item.backup, _NEW_FLAGS, 0o600, dir_fd=item.dir_fd)
        try:
            os.fchmod(fd, item.old[1])
            _write_all(fd, item.old[0])
        finally:
            os.close(fd)


def _commit(tree: _Tree, staged: list[_Staged]) -> None:
    """Rename every temporary file into place, or put every file back."""
    with _signals_blocked():
        done: list[_Staged] = []
        current = None
        try:
            for item in staged:
                current = item
                if item.old is not None:
                    _backup(tree, item)
                os.rename(item.temp, item.name, src_dir_fd=item.dir_fd, dst_dir_fd=item.dir_fd)
                item.temp = ""
                done.append(item)
        except BaseException as exc:
            for item in reversed(done):
                try:
                    if item.backup:
                        os.rename(item.backup, item.name, src_dir_fd=item.dir_fd,
                                  dst_dir_fd=item.dir_fd)  # fmt: skip
                        item.backup = None
                    else:
                        os.unlink(item.name, dir_fd=item.dir_fd)
                except OSError:
                    pass
            _discard(staged)
            tree.remove_created()
            if isinstance(exc, OSError) and current is not None:
                raise TreeError(tree.path(current.rel), f"cannot replace: {exc.strerror}") from None
            raise
        _discard(staged)  # the backups


# --- files from specs that no longer exist ----------------------------------


def find_spec_source(name: str, digest: str, dirs: Iterable[Path]) -> tuple[Path, bytes] | None:
    """A spec file called ``name`` whose bytes hash to ``digest``: in one of ``dirs``, or in
    their git history (every version of that path on every branch)."""
    name = PurePosixPath(name).name
    dirs = list(dict.fromkeys(dirs))
    for d in dirs:
        p = d / name
        try:
            if p.is_file() and not p.is_symlink():
                data = p.read_bytes()
                if spec_digest(data) == digest:
                    return p, data
        except OSError:
            pass
    for d in dirs:
        try:
            log = subprocess.run(
                ["git", "-C", str(d), "log", "--all", "--format=", "--raw", "--no-abbrev",
                 "--no-renames", "--", name],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout  # fmt: skip
        except (OSError, subprocess.SubprocessError):
            continue
        blobs = dict.fromkeys(
            sha for line in log.splitlines() if line.startswith(":")
            for sha in line.split("\t")[0].split()[2:4] if sha.strip("0")
        )  # fmt: skip
        for sha in blobs:
            try:
                data = subprocess.run(["git", "-C", str(d), "cat-file", "blob", sha],
                                      capture_output=True, timeout=60, check=True).stdout  # fmt: skip
            except (OSError, subprocess.SubprocessError):
                continue
            if spec_digest(data) == digest:
                return d / name, data
    return None


def prune(root: Path, stale: Iterable[Stale], spec_dirs: Iterable[Path]) -> tuple[list[str], list[TreeError]]:
    """Remove each stale file that a kgen render of the spec its banner names reproduces
    byte for byte, and the directories it leaves empty; refuse the others, saying why."""
    from .diagnostics import SpecError
    from .spec import parse

    removed, refused = [], []
    spec_dirs = list(spec_dirs)
    tree = _Tree(root)
    try:
        for s in stale:
            b = s.banner
            name = PurePosixPath(b.spec).name
            why = None
            found = None
            if b.version != __version__:
                why = f"it was written by kgen {b.version}; this kgen ({__version__}) cannot reproduce it"
            elif (found := find_spec_source(name, b.digest, spec_dirs)) is None:
                where = " or ".join(str(d) for d in spec_dirs) or "no spec directory"
                why = f"no {name} with sha256 {b.digest} in {where} or their git history"
            else:
                try:
                    rendered = render_spec(parse(found[1].decode(), str(found[0])))
                except (SpecError, RenderError, UnicodeDecodeError) as exc:
                    why = f"{name} (sha256 {b.digest}) no longer renders: {exc}"
                else:
                    try:
                        got = tree.read(s.path)
                    except TreeError as exc:
                        refused.append(exc)
                        continue
                    if got is None or rendered.get(s.path, "").encode() != got[0]:
                        why = (f"it differs from kgen's render of {name} (sha256 {b.digest}): "
                               "edited by hand, or not where that spec puts it")  # fmt: skip
            if why:
                refused.append(TreeError(tree.path(s.path), f"not removed: {why}; remove it by "
                                                            "hand if nothing needs it"))  # fmt: skip
                continue
            parent_rel, _, file_name = s.path.rpartition("/")
            try:
                os.unlink(file_name, dir_fd=tree.dir(parent_rel))
            except OSError as exc:
                refused.append(TreeError(tree.path(s.path), f"cannot remove: {exc.strerror}"))
                continue
            removed.append(s.path)
            while parent_rel:
                up, _, dir_name = parent_rel.rpartition("/")
                fd = tree.fds.pop(parent_rel, None)
                if fd is not None:
                    os.close(fd)
                try:
                    os.rmdir(dir_name, dir_fd=tree.dir(up))
                except OSError:
                    break
                parent_rel = up
    finally:
        tree.close()
    return removed, refused

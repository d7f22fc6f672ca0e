"""The spec format as a JSON Schema, derived from :mod:`codegen.model`.

Editors (VS Code's YAML extension, for one) use it to check a spec while it is
typed.  The schema covers structure and per-value rules; rules that relate
fields (unique function codes, coverage = region size x entries, ...) are
only checked by ``kgen validate``.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from typing import Any, Literal, Union

from . import __version__, model
from .model import C_KEYWORDS
from .spec import SIZE_UNITS, field_type, is_optional_field, yaml_fields

SCHEMA_ID = f"https://kgen.invalid/schema/spec-v{model.FORMAT_VERSION}.json"

_TEXT_RULES: dict[str, dict[str, Any]] = {
    "identifier": {
        "type": "string",
        "pattern": r"^[A-Za-z_][A-Za-z0-9_]*$",
        "not": {"enum": sorted(C_KEYWORDS)},
    },
    "comment": {"type": "string", "not": {"pattern": r"(\*/|/\*|\?\?[=/'()!<>-])"}},
    "code": {
        "type": "string",
        "pattern": r"^[\t\n\x20-\x7e]*\S[\t\n\x20-\x7e]*$",
        "not": {"pattern": r"\?\?[=/'()!<>-]"},  # a trigraph
    },
    "c-string": {
        "type": "string",
        "pattern": r"^[ !#-$&-\[\]-~]*$",
        "not": {"pattern": r"\?\?[=/'()!<>-]"},
    },
    "path": {
        "type": "string",
        "pattern": r"^[A-Za-z0-9_.+-]+(/[A-Za-z0-9_.+-]+)*$",
        "not": {"pattern": r"(^|/)\.\.(/|$)"},
    },
    "module": {"type": "string", "pattern": r"^[a-z0-9_-]{1,55}$"},
    "label": {"type": "string", "pattern": r"^[a-z][a-z0-9-]{0,31}$"},
    "version": {"type": "string", "pattern": r"^[0-9][0-9A-Za-z.+-]*$"},
}


def _schema(tp: Any, defs: dict[str, Any]) -> dict[str, Any]:
    origin = typing.get_origin(tp)
    if origin is typing.Annotated:
        base, *constraints = typing.get_args(tp)
        out: dict[str, Any] = dict(_schema(base, defs))
        for c in constraints:
            if isinstance(c, model.Range):
                out["minimum"] = c.lo
                if c.hi is not None:
                    out["maximum"] = c.hi
            elif isinstance(c, model.Text):
                out.update(_TEXT_RULES[c.kind])
            elif isinstance(c, model.Doc):
                out["description"] = c.text
            elif isinstance(c, model.SizeLiteral):
                units = "".join(u for u in SIZE_UNITS if u)
                size = {"type": "string", "pattern": rf"^\s*[0-9]+\s*[{units}]?\s*$"}
                number = {k: v for k, v in out.items() if k != "description"}
                out = {"anyOf": [number, size]} | (
                    {"description": out["description"]} if "description" in out else {}
                )
        if "anyOf" in out:  # range constraints apply to the integer branch only
            for key in ("minimum", "maximum"):
                if key in out:
                    out["anyOf"][0][key] = out.pop(key)
        return out
    if origin in (Union, types.UnionType):
        args = [a for a in typing.get_args(tp) if a is not type(None)]
        return {"anyOf": [_schema(args[0], defs), {"type": "null"}]}
    if origin is Literal:
        return {"enum": list(typing.get_args(tp))}
    if origin is tuple:
        return {"type": "array", "items": _schema(typing.get_args(tp)[0], defs)}
    if dataclasses.is_dataclass(tp) and isinstance(tp, type):
        name = tp.__name__
        if name not in defs:
            defs[name] = {}  # placeholder against recursion
            fields = yaml_fields(tp)
            defs[name] = {
                "type": "object",
                "additionalProperties": False,
                "properties": {f.name: _schema(field_type(tp, f.name), defs) for f in fields},
                "required": [f.name for f in fields if not is_optional_field(f)],
            }
        return {"$ref": f"#/$defs/{name}"}
    return {int: {"type": "integer"}, str: {"type": "string"}, bool: {"type": "boolean"}}[tp]


def spec_schema() -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a spec file."""
    defs: dict[str, Any] = {}
    root = _schema(model.Spec, defs)
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": f"kgen instruction spec, format {model.FORMAT_VERSION} (kgen {__version__})",
        "$ref": root["$ref"],
        "$defs": defs,
    }

"""Writes package.json's `contributes.configuration` from the server's one settings schema.

The server's `Settings` Struct (`lsp_server/settings.py`) holds every setting's type, default,
bounds and description (issue 17, section 4); this turns `msgspec.json.schema(Settings)` into the
`codeflow.*` properties VS Code shows, and adds the few settings only the extension reads. The
extension derives the keys it sends to the server from the generated package.json (src/settings.ts),
and tests/test_settings_schema.py fails when the committed file drifts from this output.

Run it with the project's venv after changing a setting: `npm run gen-settings` in vscode-client,
or `.venv/bin/python vscode-client/scripts/gen_configuration.py [--check]`.
"""

from __future__ import annotations

import argparse
import json
import sys
import typing
from pathlib import Path
from typing import Any

import msgspec

from codeflow.lsp_server.settings import Settings

PACKAGE_JSON = Path(__file__).resolve().parents[1] / "package.json"

# Settings the extension reads itself and never sends (src/settings.ts: CLIENT_SECTIONS). Their
# sections must not collide with a field of `Settings`.
CLIENT_PROPERTIES: dict[str, dict[str, Any]] = {
    "codeflow.server.command": {
        "type": "string",
        "default": "",
        "markdownDescription": "Path of the `codeflow` executable. Empty finds `.venv/bin/codeflow` or"
        " `venv/bin/codeflow` in the workspace, else `codeflow` on PATH. `${workspaceFolder}` is expanded.",
    },
    "codeflow.server.args": {
        "type": "array",
        "default": [],
        "markdownDescription": "Extra arguments after `codeflow serve`, for example"
        ' `["--log-file", "/tmp/codeflow.log"]`.',
        "items": {"type": "string"},
    },
    # vscode-languageclient reads `<section>.trace.server` itself.
    "codeflow.trace.server": {
        "type": "string",
        "enum": ["off", "messages", "verbose"],
        "default": "off",
        "markdownDescription": "Trace the LSP messages between VS Code and the server in the output channel.",
    },
}

# The client checks these per document language (completionsWanted in src/settings.ts).
SCOPES = {
    "codeflow.completion.enabled": "language-overridable",
    "codeflow.completion.disabledLanguages": "language-overridable",
}

# JSON Schema keywords VS Code's settings editor understands, copied as they are.
_PASSED = ("enum", "items", "minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum",
           "minLength", "maxLength", "pattern")
_SCALARS = {"string", "integer", "number", "boolean", "array"}


class SchemaError(Exception):
    """A `Settings` field that VS Code's configuration cannot express."""


def _js(value: Any) -> Any:
    """Whole floats as integers, as JSON.stringify writes them (60.0 -> 60)."""
    if isinstance(value, float) and value.is_integer():
        return int(value)
    if isinstance(value, list):
        return [_js(v) for v in value]
    return value


def _leaf(key: str, schema: dict[str, Any]) -> dict[str, Any]:
    """One `codeflow.*` property from the JSON Schema of one Settings leaf."""
    kind = schema.get("type")
    if kind is None and "enum" in schema and all(isinstance(v, str) for v in schema["enum"]):
        kind = "string"
    if kind not in _SCALARS:
        raise SchemaError(f"{key}: VS Code settings cannot express the schema {schema}")
    if "description" not in schema:
        raise SchemaError(f"{key}: give it a description in its msgspec.Meta")
    if "default" not in schema:
        raise SchemaError(f"{key}: a setting needs a default")
    prop: dict[str, Any] = {"type": kind, "default": _js(schema["default"]),
                            "markdownDescription": schema["description"]}
    prop.update({k: _js(schema[k]) for k in _PASSED if k in schema})
    if key in SCOPES:
        prop["scope"] = SCOPES[key]
    return prop


def _declared_order(annotation: Any) -> list[Any] | None:
    """A Literal's values in the order the field declares them; the schema sorts them."""
    while typing.get_origin(annotation) is typing.Annotated:
        annotation = typing.get_args(annotation)[0]
    return list(typing.get_args(annotation)) if typing.get_origin(annotation) is typing.Literal else None


def _walk(cls: type, defs: dict[str, Any], prefix: str) -> dict[str, dict[str, Any]]:
    out: dict[str, dict[str, Any]] = {}
    properties = defs[cls.__name__]["properties"]
    for field in msgspec.structs.fields(cls):
        key, schema = f"{prefix}.{field.encode_name}", properties[field.encode_name]
        if "$ref" in schema:
            out.update(_walk(field.type, defs, key))
            continue
        out[key] = _leaf(key, schema)
        order = _declared_order(field.type)
        if order is not None and sorted(order) == sorted(schema["enum"]):
            out[key]["enum"] = order
    return out


def server_properties() -> dict[str, dict[str, Any]]:
    """Every leaf of `Settings` as a `codeflow.<camelCase dotted key>` property."""
    # Through JSON and back, so that defaults are JSON values (a tuple default becomes a list).
    schema = msgspec.json.decode(msgspec.json.encode(msgspec.json.schema(Settings)))
    props = _walk(Settings, schema["$defs"], "codeflow")
    clash = {k.split(".")[1] for k in CLIENT_PROPERTIES} & {k.split(".")[1] for k in props}
    if clash:
        raise SchemaError(f"Settings fields {sorted(clash)} clash with the extension's own settings")
    missing = set(SCOPES) - set(props)
    if missing:
        raise SchemaError(f"SCOPES names settings that Settings lacks: {sorted(missing)}")
    return props


def configuration() -> dict[str, Any]:
    """The whole `contributes.configuration` object."""
    return {"title": "Codeflow", "properties": {**server_properties(), **CLIENT_PROPERTIES}}


def render(pkg: dict[str, Any]) -> str:
    """package.json's text with the configuration replaced, formatted as npm writes it."""
    pkg = {**pkg, "contributes": {**pkg["contributes"], "configuration": configuration()}}
    return json.dumps(pkg, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str] | None = None) -> int:
    """Write package.json, or with --check only say whether it is up to date."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="exit 1 if package.json is out of date")
    parser.add_argument("--package-json", type=Path, default=PACKAGE_JSON)
    args = parser.parse_args(argv)
    pkg = json.loads(args.package_json.read_text(encoding="utf-8"))
    if args.check:
        if pkg["contributes"].get("configuration") != configuration():
            print(f"{args.package_json}: contributes.configuration is out of date with"
                  " lsp_server/settings.py; run `npm run gen-settings` in vscode-client", file=sys.stderr)
            return 1
        return 0
    args.package_json.write_text(render(pkg), encoding="utf-8")
    print(f"wrote {len(configuration()['properties'])} settings to {args.package_json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Derive the chart's schema for `targets` from the target models, so the chart and the CLI accept the same list.

values.schema.json is written by hand except `$defs.target` and `$defs.target.<kind>`, which this module
generates from app.checks: one closed object per kind with the model's own fields, minus its secret fields
(SecretStr), which may only come through `secretRefs` (never a password in a ConfigMap).

    python -m tests.deploy.chart_schema          # rewrite the generated part of values.schema.json
    python -m tests.deploy.chart_schema --check  # exit 1 when it is out of date
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

from pydantic import BaseModel

from app import checks

SCHEMA_PATH = Path(__file__).resolve().parents[2] / "helm" / "airia-test-pod" / "values.schema.json"

COMMON_FIELDS = ("name", "kind", "required", "timeout", "description")
STANDARD_FORMATS = {"date-time", "date", "time", "duration", "email", "hostname", "ipv4", "ipv6", "uri", "uuid"}
_DROPPED_KEYWORDS = {"title", "default", "examples"}


def target_models() -> dict[str, type[BaseModel]]:
    """Every registered kind's target model, in the registry's order."""
    return dict(checks.kind_models())


def _is_secret(schema: dict[str, Any]) -> bool:
    options = schema.get("anyOf", [schema])
    return any(option.get("writeOnly") for option in options)


def _is_secret_map(schema: dict[str, Any]) -> bool:
    """A map whose values are secrets, e.g. http headers: each entry is bound to its own Secret key."""
    options = schema.get("anyOf", [schema])
    return any(
        isinstance(option.get("additionalProperties"), dict) and _is_secret(option["additionalProperties"])
        for option in options
    )


def _tidy(node: Any) -> Any:
    """Drop what only documents pydantic (titles, defaults) and formats Helm's validator does not know."""
    if isinstance(node, dict):
        tidied = {key: _tidy(value) for key, value in node.items() if key not in _DROPPED_KEYWORDS}
        if "format" in tidied and tidied["format"] not in STANDARD_FORMATS:
            del tidied["format"]
        return tidied
    if isinstance(node, list):
        return [_tidy(item) for item in node]
    return node


def kind_schema(kind: str, model: type[BaseModel]) -> dict[str, dict[str, Any]]:
    """`$defs` entries for one kind: `target.<kind>` and the nested models it refers to."""
    prefix = f"target.{kind}."
    schema = model.model_json_schema(by_alias=True, ref_template="#/$defs/" + prefix + "{model}")
    nested = {prefix + name: _tidy(definition) for name, definition in schema.pop("$defs", {}).items()}
    properties: dict[str, Any] = {}
    secrets: list[str] = []
    secret_maps: list[str] = []
    for field, definition in schema["properties"].items():
        if _is_secret(definition):
            secrets.append(field)
        elif _is_secret_map(definition):
            secret_maps.append(field)
        else:
            properties[field] = _tidy(definition)
    required = [field for field in schema.get("required", []) if field not in secrets]
    required_secrets = [field for field in schema.get("required", []) if field in secrets]
    if secrets or secret_maps:
        entries = {"type": "object", "minProperties": 1, "additionalProperties": {"$ref": "#/$defs/secretRef"}}
        secret_refs: dict[str, Any] = {
            "description": "Secret fields of this kind, each read from a Secret key: "
            + ", ".join(secrets + secret_maps),
            "type": "object",
            "additionalProperties": False,
            "properties": {
                **{field: {"$ref": "#/$defs/secretRef"} for field in secrets},
                **dict.fromkeys(secret_maps, entries),
            },
        }
        if required_secrets:
            secret_refs["required"] = required_secrets
            required.append("secretRefs")
        properties["secretRefs"] = secret_refs
    closed: dict[str, Any] = {"type": "object", "additionalProperties": False, "properties": properties}
    if required:
        closed["required"] = required
    return {f"target.{kind}": closed, **nested}


def target_definitions() -> dict[str, Any]:
    models = target_models()
    definitions: dict[str, Any] = {
        "target": {
            "description": "A target, as `python -m app check --config` reads it; secret fields go under secretRefs.",
            "type": "object",
            "required": ["name", "kind"],
            "properties": {"kind": {"enum": list(models)}},
            "allOf": [
                {
                    "if": {"required": ["kind"], "properties": {"kind": {"const": kind}}},
                    "then": {"$ref": f"#/$defs/target.{kind}"},
                }
                for kind in models
            ],
        }
    }
    for kind, model in models.items():
        definitions.update(kind_schema(kind, model))
    return definitions


def render(current: dict[str, Any]) -> str:
    kept = {name: value for name, value in current["$defs"].items() if not name.startswith("target")}
    updated = {**current, "$defs": {**kept, **target_definitions()}}
    return json.dumps(updated, indent=2, ensure_ascii=False) + "\n"


def main(argv: list[str]) -> int:
    text = SCHEMA_PATH.read_text(encoding="utf-8")
    wanted = render(json.loads(text))
    if "--check" in argv:
        if text != wanted:
            print(f"{SCHEMA_PATH} is out of date: run python -m tests.deploy.chart_schema", file=sys.stderr)
            return 1
        return 0
    SCHEMA_PATH.write_text(wanted, encoding="utf-8")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

"""The MCP registry manifest and the packaging facts it relies on."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[1]
# The MCP registry's schema, kept here so that the tests read nothing outside the repository.
SCHEMA = ROOT / "tests" / "data" / "server.schema.2025-12-11.json"


def _manifest() -> dict[str, object]:
    data: dict[str, object] = json.loads((ROOT / "server.json").read_text())
    return data


def test_server_json_validates_against_the_registry_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = sorted(jsonschema.Draft7Validator(schema).iter_errors(_manifest()), key=str)
    assert not errors, "\n".join(e.message for e in errors)


def test_manifest_matches_the_package() -> None:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    manifest = _manifest()
    assert manifest["version"] == project["version"]
    packages = manifest["packages"]
    assert isinstance(packages, list)
    assert packages[0]["identifier"] == project["name"]
    assert packages[0]["version"] == project["version"]
    assert packages[0]["transport"] == {"type": "stdio"}


def test_readme_carries_the_mcp_name_marker() -> None:
    readme = (ROOT / "README.md").read_text()
    match = re.search(r"mcp-name:\s*(\S+)", readme)
    assert match is not None, "README.md needs an `mcp-name: <name>` marker for the registry"
    assert match.group(1) == _manifest()["name"]


def test_every_setting_is_documented_in_env_example() -> None:
    from todo_mcp.config import Settings

    example = (ROOT / ".env.example").read_text()
    for name, field in Settings.model_fields.items():
        alias = field.validation_alias
        env_names = [alias] if isinstance(alias, str) else list(getattr(alias, "choices", []))
        assert env_names, f"setting {name} has no environment name"
        assert any(re.search(rf"^#?\s*{re.escape(str(env))}=", example, re.M) for env in env_names), (
            f"{env_names[0]} is missing from .env.example"
        )

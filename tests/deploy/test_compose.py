"""deploy/compose.yaml is valid against the compose specification's schema (a reduced copy,
vendored: tests/deploy/compose-spec.schema.json says what it leaves out), since `docker
compose config` is not available here; and it is complete: every setting it sets exists,
notices have a gateway, every service it waits on and every volume it names is defined."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from shared.settings import Settings

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "deploy" / "compose.yaml"
SCHEMA = Path(__file__).with_name("compose-spec.schema.json")


def compose() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(COMPOSE.read_text())  # `<<` merges resolved
    return loaded


def test_the_compose_file_is_valid_against_the_compose_schema() -> None:
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft7Validator.check_schema(schema)
    errors = [
        f"{'/'.join(map(str, e.path))}: {e.message}"
        for e in jsonschema.Draft7Validator(schema).iter_errors(compose())
    ]
    assert not errors, errors


def test_the_schema_refuses_a_misspelt_key() -> None:
    schema = json.loads(SCHEMA.read_text())
    broken = compose()
    broken["services"]["intake"]["depends-on"] = ["setup"]
    assert not jsonschema.Draft7Validator(schema).is_valid(broken)


def test_every_setting_exists_and_notices_have_a_gateway() -> None:
    known = {f"COMPLAINTS_{name.upper()}" for name in Settings.model_fields}
    services = compose()["services"]
    for name, service in services.items():
        environment = service.get("environment", {})
        settings = {k for k in environment if k.startswith("COMPLAINTS_")}
        assert settings <= known, (name, settings - known)
    gateway = services["investigation"]["environment"]["COMPLAINTS_NOTIFICATION_GATEWAY_URL"]
    default = re.fullmatch(
        r"\$\{COMPLAINTS_NOTIFICATION_GATEWAY_URL:-(http://([a-z-]+):\d+/\S+)\}", gateway
    )
    assert default, gateway
    assert default[2] in services, "the default gateway is a service of the file"


def test_what_is_waited_on_and_mounted_is_defined() -> None:
    document = compose()
    services = document["services"]
    volumes = set(document.get("volumes", {}))
    for name, service in services.items():
        assert set(service.get("depends_on", {})) <= set(services), name
        for mount in service.get("volumes", []):
            source = mount.split(":", 1)[0]
            if not source.startswith((".", "/")):
                assert source in volumes, (name, source)


def test_the_keys_are_given_to_the_image_user_before_they_are_read() -> None:
    services = compose()["services"]
    user = re.search(r"useradd .*--uid (\d+)", (ROOT / "deploy" / "Dockerfile").read_text())
    assert user
    script = " ".join(services["key-permissions"]["entrypoint"])
    assert f"chown -R {user[1]}:{user[1]} /run/kek /run/audit" in script
    for name, service in services.items():
        if any(":/run/kek" in m or ":/run/audit" in m for m in service.get("volumes", [])):
            if name == "key-permissions":
                continue
            waits = service.get("depends_on", {})
            assert "key-permissions" in waits or "setup" in waits, name

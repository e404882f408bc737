"""compose.yaml runs the image the way the Dockerfile does, with commands, options and
settings the CLI and the Settings class really have (no Docker engine needed to check)."""

from __future__ import annotations

import json
import re
import shlex
from pathlib import Path
from typing import Any

import pytest
import yaml

from app.__main__ import build_parser
from app.core.config import Settings

ROOT = Path(__file__).resolve().parent.parent
# Variables read outside the Settings class: by the CLI, and by prometheus-client.
OTHER_VARIABLES = {
    "MINERAL_MLLP_API_KEY": ROOT / "app/cli/serve.py",
    # setup-roles --password-env MINERAL_APP_PASSWORD reads it by name
    "MINERAL_APP_PASSWORD": ROOT / "compose.yaml",
}


def compose() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load((ROOT / "compose.yaml").read_text())
    return document


def dockerfile_instruction(name: str) -> str:
    """The last ``name`` instruction of the runtime stage, continuation lines joined."""
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    found = re.findall(rf"^{name}\s+(.+)$", text, flags=re.M)
    assert found, f"no {name} in the Dockerfile"
    return str(found[-1]).strip()


def settings_variables() -> set[str]:
    names = set()
    for name, field in Settings.model_fields.items():
        names.add(f"MINERAL_{name.upper()}")
        alias = field.validation_alias
        for choice in getattr(alias, "choices", []):
            if isinstance(choice, str) and choice.isupper():
                names.add(choice)
    return names


def app_services() -> dict[str, dict[str, Any]]:
    return {
        name: service
        for name, service in compose()["services"].items()
        if service.get("image", "").startswith("mineral-labs") or "build" in service
    }


def test_the_api_service_runs_the_dockerfile_command_and_healthcheck() -> None:
    api = compose()["services"]["api"]
    # The Dockerfile's CMD migrates then serves as one role; compose migrates as the owner in
    # its own service and serves as the service role.
    assert api["command"] == [*json.loads(dockerfile_instruction("CMD")), "--no-migrate"]
    health = dockerfile_instruction("HEALTHCHECK")
    command = json.loads(health.split(" CMD ", 1)[1])
    assert api["healthcheck"]["test"] == ["CMD", *command]
    options = dict(re.findall(r"--([a-z-]+)=(\S+)", health.split(" CMD ", 1)[0]))
    assert api["healthcheck"]["interval"] == options["interval"]
    assert api["healthcheck"]["timeout"] == options["timeout"]
    assert api["healthcheck"]["start_period"] == options["start-period"]
    assert api["healthcheck"]["retries"] == int(options["retries"])


def test_published_ports_are_the_ports_the_commands_listen_on() -> None:
    exposed = set(dockerfile_instruction("EXPOSE").split())
    for name, service in app_services().items():
        args = build_parser().parse_args(service["command"][3:])
        if not hasattr(args, "port"):  # one-shot commands (migrate, setup-roles) listen on none
            assert "ports" not in service, name
            continue
        published = {str(p).split(":")[-1] for p in service.get("ports", [])}
        assert str(args.port) in published, name
        assert str(args.port) in exposed, name
        assert args.host == "0.0.0.0", name
        if getattr(args, "metrics_port", None):
            assert str(args.metrics_port) in published


def test_every_command_is_a_real_cli_command() -> None:
    for name, service in app_services().items():
        command = service["command"]
        assert command[:3] == ["python", "-m", "app"], name
        build_parser().parse_args(command[3:])  # exits (fails the test) on an unknown option
    assert compose()["services"]["mllp"]["command"][3] == "mllp"


_INTERPOLATION = re.compile(r"\$\{(\w+)(?::?([-?])([^}]*))?\}")


def interpolated(value: str) -> str:
    """Compose's ``${VAR:-default}`` as its default, ``${VAR:?message}`` (required) as a value
    an operator would give."""

    def one(match: re.Match[str]) -> str:
        return match.group(3) if match.group(2) == "-" else "s3cret-" + "x" * 40

    return _INTERPOLATION.sub(one, value)


def field_of(variable: str) -> str:
    for name, field in Settings.model_fields.items():
        if variable in getattr(field.validation_alias, "choices", []):
            return name
    return variable.removeprefix("MINERAL_").lower()


@pytest.mark.parametrize("service", ["api", "mllp", "migrate", "roles"])
def test_every_environment_variable_is_a_real_setting(service: str) -> None:
    known = settings_variables()
    environment = compose()["services"][service]["environment"]
    values = {}
    for variable, value in environment.items():
        if variable in OTHER_VARIABLES:
            assert variable in OTHER_VARIABLES[variable].read_text()
            continue
        assert variable in known, f"{variable} is not a Settings field"
        values[field_of(variable)] = interpolated(str(value))
    Settings.model_validate(values)  # together they are a valid production configuration


def test_the_audit_key_is_required_and_shared_by_every_service() -> None:
    services = app_services()
    keys = {name: service["environment"]["MINERAL_AUDIT_KEY"] for name, service in services.items()}
    assert len(set(keys.values())) == 1
    assert next(iter(keys.values())).startswith("${MINERAL_AUDIT_KEY:?")


def test_the_services_reach_postgresql_and_wait_for_it() -> None:
    services = compose()["services"]
    url = services["api"]["environment"]["DATABASE_URL"]
    assert url.startswith("postgresql://")
    assert re.search(r"@db:5432/", url)
    assert services["mllp"]["environment"]["DATABASE_URL"] == url
    assert services["db"]["image"].startswith("postgres:")
    assert "pg_isready" in " ".join(services["db"]["healthcheck"]["test"])
    assert services["api"]["depends_on"]["db"]["condition"] == "service_healthy"
    # Separate roles: the owner migrates and grants; the service role serves.
    owner = services["migrate"]["environment"]["DATABASE_URL"]
    assert owner.startswith("postgresql://mineral:")
    assert url.startswith("postgresql://mineral_app:")
    assert services["roles"]["environment"]["DATABASE_URL"] == owner
    assert services["roles"]["command"][3:6] == ["setup-roles", "--service-role", "mineral_app"]
    assert services["roles"]["depends_on"]["migrate"]["condition"] == (
        "service_completed_successfully"
    )
    assert services["api"]["depends_on"]["roles"]["condition"] == ("service_completed_successfully")
    assert services["mllp"]["depends_on"]["api"]["condition"] == "service_healthy"


def test_the_mllp_healthcheck_probes_its_port() -> None:
    mllp = compose()["services"]["mllp"]
    args = build_parser().parse_args(mllp["command"][3:])
    probe = " ".join(mllp["healthcheck"]["test"])
    assert f"('127.0.0.1', {args.port})" in probe


def test_containers_get_longer_to_stop_than_the_shutdown_grace() -> None:
    for name, service in app_services().items():
        grace = float(service["environment"]["MINERAL_SHUTDOWN_GRACE_SECONDS"])
        period = service["stop_grace_period"]
        assert period.endswith("s"), name
        assert float(period[:-1]) > grace, name
        assert service.get("stop_signal", "SIGTERM") == "SIGTERM", name


def test_the_header_commands_are_real_cli_commands() -> None:
    for line in (ROOT / "compose.yaml").read_text().splitlines():
        if "python -m app " in line:
            words = shlex.split(line.split("python -m app ", 1)[1])
            build_parser().parse_args(words)

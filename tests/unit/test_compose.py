"""docker-compose.yml is a valid Compose file, and what it runs is what the code expects.

No Docker engine runs here, so the file is checked on paper:

- against the Compose Specification's JSON schema, vendored as
  ``tests/fixtures/compose-spec.json`` from
  https://github.com/compose-spec/compose-spec/blob/170098ba07d9f53c383a41bfd4c5166b0a4529a6/schema/compose-spec.json
  (Apache License 2.0, the Compose Specification authors; unmodified). Refresh it from there;
  the canonical copy now lives in compose-spec/compose-go, schema/compose-spec.json;
- against :class:`fulfil.settings.Settings`: every variable given to the worker, the API and
  the migrations is a setting, every secret production insists on is required with a message,
  and the environment as Compose would hand it over passes ``ENV=production``'s checks;
- against the code and the Dockerfile: the API's port as uvicorn is invoked, the worker's
  script and metrics port, the migration module, Temporal's address, namespace and search
  attributes, the databases Temporal's schema job creates and its server reads;
- for order: a healthcheck on every long-running service, ``depends_on`` conditions that wait
  for health or for a one-shot's success, pinned images.

Each check returns the problems it finds; ``test_the_checks_catch_*`` feed them broken copies
of the file, so a check that can no longer fail fails the suite.
"""

from __future__ import annotations

import base64
import copy
import importlib
import importlib.util
import json
import re
import shlex
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx
import jsonschema
import pytest
import yaml
from sqlalchemy.engine import make_url
from temporalio.common import SearchAttributeIndexedValueType

from devstack import KEEP_ALIVE_SECONDS
from fulfil.settings import DEV_SECRETS, MIN_SECRET_LENGTHS, Settings
from fulfil.temporal import SEARCH_ATTRIBUTES

ROOT = Path(__file__).resolve().parents[2]
COMPOSE = ROOT / "docker-compose.yml"
DOCKERFILE = ROOT / "Dockerfile"
SCHEMA = ROOT / "tests" / "fixtures" / "compose-spec.json"

ENGINE_SERVICES = ("migrate", "worker", "api")
SETTING_NAMES = {name.upper() for name in Settings.model_fields}
# What ENV=production refuses when left at its default or too short.
PRODUCTION_SECRETS = sorted({*DEV_SECRETS, *MIN_SECRET_LENGTHS, "codec_keys"})

Doc = dict[str, Any]

# ---------------------------------------------------------------------------
# Compose's interpolation: $$, ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:?msg},
# ${VAR?msg}, $VAR.

_REFERENCE = re.compile(
    r"\$\$"
    r"|\$\{(?P<name>[A-Za-z_][A-Za-z0-9_]*)(?:(?P<op>:?[-?])(?P<arg>[^}]*))?\}"
    r"|\$(?P<bare>[A-Za-z_][A-Za-z0-9_]*)"
)


class MissingVariable(Exception):
    pass


def references(value: str) -> Iterator[tuple[str, str, str]]:
    """``(name, operator, argument)`` of each variable in ``value`` (``$$`` is no variable)."""
    for match in _REFERENCE.finditer(value):
        if match.group(0) == "$$":
            continue
        if match.group("bare"):
            yield match.group("bare"), "", ""
        else:
            yield match.group("name"), match.group("op") or "", match.group("arg") or ""


def interpolate(value: Any, env: dict[str, str]) -> Any:
    if isinstance(value, dict):
        return {key: interpolate(item, env) for key, item in value.items()}
    if isinstance(value, list):
        return [interpolate(item, env) for item in value]
    if not isinstance(value, str):
        return value

    def substitute(match: re.Match[str]) -> str:
        if match.group(0) == "$$":
            return "$"
        name = match.group("name") or match.group("bare")
        op, arg = match.group("op") or "", match.group("arg") or ""
        given = env.get(name)
        if op in (":-", "-"):
            return (given if given or (op == "-" and given is not None) else arg) or ""
        if op in (":?", "?"):
            if given is None or (op == ":?" and not given):
                raise MissingVariable(f"{name}: {arg}")
            return given
        return given or ""

    return _REFERENCE.sub(substitute, value)


def strings(value: Any) -> Iterator[str]:
    if isinstance(value, dict):
        for item in value.values():
            yield from strings(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings(item)
    elif isinstance(value, str):
        yield value


def required_variables(value: Any) -> set[str]:
    return {name for text in strings(value) for name, op, _ in references(text) if "?" in op}


def sample_value(name: str) -> str:
    """A value an operator could give ``name``: strong, well-formed, https where a URL."""
    key = base64.b64encode(bytes(range(32))).decode()
    if name == "CODEC_KEYS":
        return f"prod1:{key}"
    if name == "VAULT_KEY":
        return key
    if name.endswith(("_URL", "_ISSUER", "_ENDPOINT")):
        return f"https://{name.lower().replace('_', '-')}.example.com"
    if name == "POSTGRES_PASSWORD":
        return "pg-Secret-2026"
    return f"{name.lower()}-" + "x" * 40


def sample_environment(doc: Doc) -> dict[str, str]:
    return {name: sample_value(name) for name in required_variables(doc)}


def resolved(doc: Doc) -> Doc:
    """The file as Compose would run it with every required variable given."""
    result: Doc = interpolate(doc, sample_environment(doc))
    return result


# ---------------------------------------------------------------------------
# Reading the files


def load_compose() -> Doc:
    loaded: Doc = yaml.safe_load(COMPOSE.read_text())  # merge keys (<<) resolved
    return loaded


def environment(service: Doc) -> dict[str, str]:
    env = service.get("environment") or {}
    if isinstance(env, list):
        env = dict(item.split("=", 1) for item in env)
    return {str(key): str(value) for key, value in env.items()}


def command(service: Doc) -> list[str]:
    value = service.get("command") or []
    return shlex.split(value) if isinstance(value, str) else [str(part) for part in value]


def option(argv: list[str], flag: str) -> str | None:
    for i, part in enumerate(argv):
        if part == flag and i + 1 < len(argv):
            return argv[i + 1]
        if part.startswith(flag + "="):
            return part.split("=", 1)[1]
    return None


def healthcheck_text(service: Doc) -> str:
    test = (service.get("healthcheck") or {}).get("test") or []
    return test if isinstance(test, str) else " ".join(str(part) for part in test)


def container_ports(service: Doc) -> set[int]:
    found = {int(str(port)) for port in service.get("expose") or []}
    for port in service.get("ports") or []:
        target = port.get("target") if isinstance(port, dict) else str(port).split(":")[-1]
        found.add(int(str(target).split("/")[0]))
    return found


def is_one_shot(service: Doc) -> bool:
    return str(service.get("restart", "no")) == "no"


def dockerfile() -> tuple[list[str], list[str], set[int]]:
    """The Dockerfile's COPY sources, CMD and EXPOSEd ports."""
    copied: list[str] = []
    cmd: list[str] = []
    exposed: set[int] = set()
    for line in DOCKERFILE.read_text().splitlines():
        words = line.split()
        if not words or words[0].startswith("#"):
            continue
        if words[0] == "COPY":
            copied += [w.rstrip("/") for w in words[1:-1] if not w.startswith("--")]
        elif words[0] == "CMD":
            cmd = json.loads(line.split(None, 1)[1])
        elif words[0] == "EXPOSE":
            exposed |= {int(port.split("/")[0]) for port in words[1:]}
    return copied, cmd, exposed


# ---------------------------------------------------------------------------
# The checks: each returns the problems it finds.


def schema_problems(doc: Doc) -> list[str]:
    schema = json.loads(SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)
    return [
        f"{'/'.join(str(p) for p in error.absolute_path) or '<top>'}: {error.message}"
        for error in validator.iter_errors(resolved(doc))
    ]


def variable_problems(doc: Doc) -> list[str]:
    """Every variable has a default or is required with a message: none silently blank."""
    problems = []
    for text in strings(doc):
        for name, op, arg in references(text):
            if not op:
                problems.append(f"${name} has neither a default nor :?message (blank if unset)")
            elif "?" in op and not arg.strip():
                problems.append(f"${{{name}{op}}} is required without saying what to set")
    return problems


def engine_environment_problems(doc: Doc) -> list[str]:
    """What the worker, the API and the migrations are given is read by Settings."""
    problems = []
    postgres_required = required_variables(doc["services"]["postgres"])
    for name in ENGINE_SERVICES:
        service = doc["services"][name]
        env = environment(service)
        for key in sorted(env):
            if key not in SETTING_NAMES:
                problems.append(f"{name}: {key} is not a field of fulfil.settings.Settings")
        for variable in sorted(required_variables(env) - SETTING_NAMES - postgres_required):
            problems.append(f"{name}: the required ${{{variable}}} is not a setting")
        for secret in PRODUCTION_SECRETS:
            value = env.get(secret.upper(), "")
            refs = list(references(value))
            if not (len(refs) == 1 and refs[0][:2] == (secret.upper(), ":?")):
                problems.append(
                    f"{name}: {secret.upper()} must be ${{{secret.upper()}:?message}} "
                    f"(production refuses its default), not {value!r}"
                )
    return problems


def production_settings_problems(doc: Doc, monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Each engine service's environment, as Compose hands it over, passes ENV=production."""
    problems = []
    services = resolved(doc)["services"]
    for name in ENGINE_SERVICES:
        with monkeypatch.context() as patch:
            for setting in SETTING_NAMES:
                patch.delenv(setting, raising=False)
            for key, value in environment(services[name]).items():
                patch.setenv(key, value)
            try:
                settings = Settings(_env_file=None)
            except ValueError as exc:
                problems.append(f"{name}: {exc}")
                continue
            if settings.env != "production":
                problems.append(f"{name}: ENV is {settings.env}, not production")
    return problems


def wiring_problems(doc: Doc) -> list[str]:
    """Addresses, names and ports agree between the services, the code and the Dockerfile."""
    problems: list[str] = []
    raw = doc["services"]
    services = resolved(doc)["services"]
    copied, docker_cmd, exposed = dockerfile()

    def expect(condition: bool, message: str) -> None:
        if not condition:
            problems.append(message)

    postgres = environment(services["postgres"])
    temporal = environment(services["temporal"])
    schema_job = environment(services["temporal-schema"])
    setup = environment(services["temporal-setup"])
    ui = environment(services["temporal-ui"])
    for name in ENGINE_SERVICES:
        env = environment(services[name])
        url = make_url(env.get("DATABASE_URL", ""))
        expect(
            url.drivername == "postgresql+psycopg"
            and url.host == "postgres"
            and (url.port or 5432) == 5432
            and url.username == postgres["POSTGRES_USER"]
            and url.password == postgres["POSTGRES_PASSWORD"]
            and url.database == postgres["POSTGRES_DB"],
            f"{name}: DATABASE_URL {url!r} is not the postgres service's database",
        )
        expect(
            urlsplit(env.get("REDIS_URL", "")).hostname == "redis",
            f"{name}: REDIS_URL does not point at the redis service",
        )
        expect(
            env.get("TEMPORAL_ADDRESS") == "temporal:7233",
            f"{name}: TEMPORAL_ADDRESS is not the temporal service's frontend (temporal:7233)",
        )
        expect(
            environment(raw[name]).get("TEMPORAL_NAMESPACE")
            == environment(raw["temporal-setup"]).get("TEMPORAL_NAMESPACE")
            == environment(raw["temporal-ui"]).get("TEMPORAL_DEFAULT_NAMESPACE"),
            f"{name}: TEMPORAL_NAMESPACE is not the namespace temporal-setup creates and the UI "
            "shows",
        )
        expect(
            name in raw and "build" in raw[name] and is_one_shot(raw[name]) == (name == "migrate"),
            f"{name}: not built from the Dockerfile, or wrongly one-shot",
        )

    # Temporal: the frontend the clients use, the schema its job writes, the attributes.
    expect(
        "7233" in healthcheck_text(services["temporal"])
        and 7233 in container_ports(services["temporal"]),
        "temporal: the frontend port 7233 is not the one checked and published",
    )
    expect(
        temporal.get("BIND_ON_IP") == "0.0.0.0",
        "temporal: BIND_ON_IP must be 0.0.0.0 for the other containers to reach it",
    )
    expect(
        temporal.get("DB") == schema_job.get("SQL_PLUGIN") == "postgres12"
        and temporal.get("POSTGRES_SEEDS") == schema_job.get("SQL_HOST") == "postgres"
        and temporal.get("POSTGRES_USER") == schema_job.get("SQL_USER") == postgres["POSTGRES_USER"]
        and temporal.get("POSTGRES_PWD")
        == schema_job.get("SQL_PASSWORD")
        == postgres["POSTGRES_PASSWORD"],
        "temporal / temporal-schema: not the same PostgreSQL server, plugin and credentials",
    )
    schema_script = " ".join(command(services["temporal-schema"]))
    for database, schema_name in (
        (temporal.get("DBNAME"), "postgresql/v12/temporal"),
        (temporal.get("VISIBILITY_DBNAME"), "postgresql/v12/visibility"),
    ):
        expect(
            bool(database)
            and re.search(
                rf"--db {database} update-schema --schema-name {schema_name}\b", schema_script
            )
            is not None,
            f"temporal-schema: does not bring {database!r} to the schema {schema_name}",
        )
    expect(
        re.search(r"for db in temporal temporal_visibility; do", schema_script) is not None
        and "create-database" in schema_script
        and "setup-schema -v 0.0" in schema_script,
        "temporal-schema: does not create and version both databases",
    )
    expect(
        "DYNAMIC_CONFIG_FILE_PATH" in temporal
        and any(
            isinstance(c, dict) and c.get("target") == temporal["DYNAMIC_CONFIG_FILE_PATH"]
            for c in services["temporal"].get("configs") or []
        ),
        "temporal: DYNAMIC_CONFIG_FILE_PATH names no file given to the server (it must exist)",
    )
    expect(
        setup.get("TEMPORAL_ADDRESS") == ui.get("TEMPORAL_ADDRESS") == "temporal:7233",
        "temporal-setup / temporal-ui: not pointed at the temporal service",
    )
    setup_script = " ".join(command(services["temporal-setup"]))
    listed = re.search(r"for name in ([A-Za-z ]+); do", setup_script)
    wanted = [key.name for key in SEARCH_ATTRIBUTES]
    expect(
        listed is not None and listed.group(1).split() == wanted,
        f"temporal-setup: registers {listed.group(1).split() if listed else None}, "
        f"fulfil/temporal.py SEARCH_ATTRIBUTES are {wanted}",
    )
    expect(
        all(
            k.indexed_value_type == SearchAttributeIndexedValueType.KEYWORD
            for k in SEARCH_ATTRIBUTES
        )
        and "--type Keyword" in setup_script
        and "namespace create" in setup_script,
        "temporal-setup: does not create the namespace and Keyword attributes",
    )
    admin_tags = {
        services[name]["image"].rsplit(":", 1)[1] for name in ("temporal-schema", "temporal-setup")
    }
    expect(
        admin_tags == {services["temporal"]["image"].rsplit(":", 1)[1]},
        f"admin-tools {admin_tags} is not the server's version: the schema must match the server",
    )

    # The UI: no writes, OIDC login, and the codec endpoint gets the user's token over https.
    expect(
        ui.get("TEMPORAL_DISABLE_WRITE_ACTIONS") == "true"
        and ui.get("TEMPORAL_AUTH_ENABLED") == "true"
        and ui.get("TEMPORAL_CODEC_PASS_ACCESS_TOKEN") == "true",
        "temporal-ui: write actions must be off, OIDC on, and the token passed to the codec",
    )
    expect(
        ui.get("TEMPORAL_CODEC_ENDPOINT", "").startswith("https://"),
        "temporal-ui: the UI passes its token only to an https codec endpoint",
    )
    api_env = environment(services["api"])
    callback = urlsplit(ui.get("TEMPORAL_AUTH_CALLBACK_URL", ""))
    expect(
        api_env.get("CODEC_OIDC_ISSUER") == ui.get("TEMPORAL_AUTH_PROVIDER_URL")
        and api_env.get("CODEC_CORS_ORIGINS", "").rstrip("/")
        == f"{callback.scheme}://{callback.netloc}"
        and callback.path == "/auth/sso/callback",
        "temporal-ui / api: the codec must trust the UI's issuer and allow the UI's origin",
    )

    # The API: uvicorn serves api.app:app on the port published, checked and in the Dockerfile.
    api_argv = command(services["api"])
    api_port = int(option(api_argv, "--port") or 8000)
    expect(
        api_argv[:2] == ["uvicorn", "api.app:app"]
        and hasattr(importlib.import_module("api.app"), "app")
        and option(api_argv, "--host") == "0.0.0.0",
        "api: is not uvicorn serving api.app:app on all interfaces",
    )
    expect(
        api_port in container_ports(services["api"])
        and f"127.0.0.1:{api_port}/readyz" in healthcheck_text(services["api"])
        and docker_cmd[:2] == api_argv[:2]
        and int(option(docker_cmd, "--port") or 0) == api_port
        and api_port in exposed
        and urlsplit(api_env.get("API_BASE", "")).port == api_port,
        f"api: port {api_port} is not the one published, health-checked, in the Dockerfile and "
        "in API_BASE",
    )
    expect(
        option(api_argv, "--timeout-keep-alive")
        == option(docker_cmd, "--timeout-keep-alive")
        == str(KEEP_ALIVE_SECONDS),
        f"api: --timeout-keep-alive is not {KEEP_ALIVE_SECONDS} s (devstack.KEEP_ALIVE_SECONDS) "
        "in compose and the Dockerfile; uvicorn's 5 s races clients' idle expiry",
    )

    # The worker: worker.py, and its SDK metrics on WORKER_METRICS_PORT.
    worker_env = environment(services["worker"])
    metrics_port = int(worker_env.get("WORKER_METRICS_PORT", "0") or 0)
    expect(
        command(services["worker"]) == ["python", "worker.py"]
        and (ROOT / "worker.py").is_file()
        and "worker.py" in copied,
        "worker: does not run worker.py (or the image lacks it)",
    )
    expect(
        metrics_port > 0
        and metrics_port in container_ports(services["worker"])
        and f"127.0.0.1:{metrics_port}/" in healthcheck_text(services["worker"])
        and metrics_port in exposed,
        f"worker: WORKER_METRICS_PORT {metrics_port or None} is not exposed, health-checked and "
        "in the Dockerfile",
    )

    # The migrations: Alembic through db.migrate, in the image.
    migrate_argv = command(services["migrate"])
    expect(
        migrate_argv == ["python", "-m", "db.migrate"]
        and importlib.util.find_spec("db.migrate") is not None,
        "migrate: does not run python -m db.migrate",
    )
    for package in ("api", "db", "fulfil", "workflows", "activities"):
        expect(package in copied, f"Dockerfile: {package}/ is not copied into the image")
    return problems


def order_problems(doc: Doc) -> list[str]:
    """Healthchecks on long-running services; depends_on waits for health or success."""
    problems = []
    services = doc["services"]
    for name, service in services.items():
        if not is_one_shot(service):
            check = service.get("healthcheck") or {}
            if not check.get("test") or check.get("disable"):
                problems.append(f"{name}: a long-running service without a healthcheck")
        if "build" not in service:
            image = str(service.get("image", ""))
            tag = image.rsplit(":", 1)[1] if ":" in image.split("/")[-1] else ""
            if not tag or tag == "latest":
                problems.append(f"{name}: image {image!r} is not pinned to a version")
        depends = service.get("depends_on") or {}
        if isinstance(depends, list):
            problems.append(f"{name}: depends_on without conditions starts before it is ready")
            continue
        for target, spec in depends.items():
            wanted = (
                "service_completed_successfully"
                if is_one_shot(services[target])
                else "service_healthy"
            )
            if (spec or {}).get("condition") != wanted:
                problems.append(f"{name}: depends_on {target} must wait for {wanted}")
    for name in ("worker", "api"):
        for one_shot in ("migrate", "temporal-setup"):
            if one_shot not in (services[name].get("depends_on") or {}):
                problems.append(f"{name}: starts without waiting for {one_shot}")
    return problems


# ---------------------------------------------------------------------------
# The tests


@pytest.fixture(scope="module")
def doc() -> Doc:
    return load_compose()


def test_the_file_follows_the_compose_specification(doc: Doc) -> None:
    assert schema_problems(doc) == []


def test_every_variable_has_a_default_or_a_message(doc: Doc) -> None:
    assert variable_problems(doc) == []


def test_compose_stops_without_a_required_secret(doc: Doc) -> None:
    env = sample_environment(doc)
    del env["OPS_API_KEY"]
    with pytest.raises(MissingVariable, match="OPS_API_KEY: set OPS_API_KEY"):
        interpolate(doc, env)


def test_the_engine_is_given_settings_and_every_production_secret(doc: Doc) -> None:
    assert engine_environment_problems(doc) == []


def test_the_engine_environment_passes_production_settings(
    doc: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    assert production_settings_problems(doc, monkeypatch) == []


def test_services_agree_with_the_code_and_each_other(doc: Doc) -> None:
    assert wiring_problems(doc) == []


def test_the_api_keeps_idle_connections_longer_than_clients_do() -> None:
    """A client reusing a connection the server is closing loses the request (httpx.ReadError,
    seen in CI with uvicorn's 5 s against httpx's 5 s), so the server's must be longer."""
    expiry = httpx.Limits().keepalive_expiry  # what an httpx client uses unless told otherwise
    assert expiry is not None
    assert max(expiry, 60) < KEEP_ALIVE_SECONDS  # 60 s: nginx upstream's and AWS ALB's idle timeout


def test_services_start_in_order_and_report_health(doc: Doc) -> None:
    assert order_problems(doc) == []


# The checks themselves can fail: broken copies of the file are caught.


def broken(doc: Doc, change: Callable[[Doc], None]) -> Doc:
    copy_of = copy.deepcopy(doc)
    change(copy_of)
    return copy_of


def rename_key(env: dict[str, Any], old: str, new: str) -> None:
    env[new] = env.pop(old)


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (  # a misspelt setting
            lambda d: rename_key(
                d["services"]["worker"]["environment"], "PAYOUT_HOLD_SECONDS", "PAYOUT_HOLD_SECOND"
            ),
            "worker: PAYOUT_HOLD_SECOND is not a field",
        ),
        (  # a production secret left out
            lambda d: d["services"]["api"]["environment"].pop("VAULT_KEY"),
            "api: VAULT_KEY must be ${VAULT_KEY:?message}",
        ),
        (  # a secret with a weak default instead of required
            lambda d: d["services"]["api"]["environment"].update(
                OPS_API_KEY="${OPS_API_KEY:-ops_dev_key}"
            ),
            "api: OPS_API_KEY must be",
        ),
    ],
)
def test_the_checks_catch_environment_mistakes(
    doc: Doc, change: Callable[[Doc], None], expected: str
) -> None:
    problems = engine_environment_problems(broken(doc, change))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["services"]["api"]["command"].__setitem__(5, "8001"),
            "api: port 8001 is not the one published",
        ),
        (
            lambda d: d["services"]["api"]["command"].__setitem__(-1, "5"),
            "api: --timeout-keep-alive is not",
        ),
        (
            lambda d: d["services"]["worker"].__setitem__("command", ["python", "-m", "worker"]),
            "worker: does not run worker.py",
        ),
        (
            lambda d: d["services"]["worker"]["environment"].update(WORKER_METRICS_PORT="9465"),
            "worker: WORKER_METRICS_PORT 9465",
        ),
        (
            lambda d: d["services"]["api"]["environment"].update(TEMPORAL_ADDRESS="temporal:7234"),
            "api: TEMPORAL_ADDRESS",
        ),
        (
            lambda d: d["services"]["temporal-setup"]["environment"].update(
                TEMPORAL_NAMESPACE="orders"
            ),
            "TEMPORAL_NAMESPACE is not the namespace",
        ),
        (
            lambda d: d["services"]["temporal-setup"].__setitem__(
                "command", [d["services"]["temporal-setup"]["command"][0].replace(" PayoutId", "")]
            ),
            "temporal-setup: registers",
        ),
        (
            lambda d: d["services"]["temporal-setup"].__setitem__(
                "image", "temporalio/admin-tools:1.30.1"
            ),
            "is not the server's version",
        ),
        (
            lambda d: d["services"]["temporal-ui"]["environment"].update(
                TEMPORAL_DISABLE_WRITE_ACTIONS="false"
            ),
            "temporal-ui: write actions must be off",
        ),
    ],
)
def test_the_checks_catch_wiring_mistakes(
    doc: Doc, change: Callable[[Doc], None], expected: str
) -> None:
    problems = wiring_problems(broken(doc, change))
    assert any(expected in problem for problem in problems), problems


@pytest.mark.parametrize(
    ("change", "expected"),
    [
        (
            lambda d: d["services"]["redis"].pop("healthcheck"),
            "redis: a long-running service without a healthcheck",
        ),
        (
            lambda d: d["services"]["api"]["depends_on"]["migrate"].update(
                condition="service_started"
            ),
            "api: depends_on migrate must wait for service_completed_successfully",
        ),
        (
            lambda d: d["services"]["temporal-ui"].__setitem__("image", "temporalio/ui:latest"),
            "temporal-ui: image 'temporalio/ui:latest' is not pinned",
        ),
    ],
)
def test_the_checks_catch_order_mistakes(
    doc: Doc, change: Callable[[Doc], None], expected: str
) -> None:
    problems = order_problems(broken(doc, change))
    assert any(expected in problem for problem in problems), problems


def test_the_checks_catch_schema_and_variable_mistakes(
    doc: Doc, monkeypatch: pytest.MonkeyPatch
) -> None:
    bad_key = broken(doc, lambda d: d["services"]["api"].__setitem__("healtcheck", {}))
    assert any("healtcheck" in problem for problem in schema_problems(bad_key))
    blank = broken(
        doc, lambda d: d["services"]["api"]["environment"].update(EMAIL_API_BASE="${EMAIL_BASE}")
    )
    assert any("$EMAIL_BASE has neither" in problem for problem in variable_problems(blank))
    weak = broken(
        doc, lambda d: d["services"]["worker"]["environment"].update(PLATFORM_FEE_BPS="15000")
    )
    assert any("worker:" in p for p in production_settings_problems(weak, monkeypatch))

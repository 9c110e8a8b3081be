"""Where the ``fulfil`` command line gets its configuration, and how it fails.

The engine's own :class:`~fulfil.settings.Settings`, read from the same environment: ``API_BASE``,
``OPS_API_KEY``, ``TEMPORAL_ADDRESS``, ``TEMPORAL_NAMESPACE``, ``TEMPORAL_UI_URL``,
``CODEC_KEYS``, ``SANDBOX_BASE``. In a checkout, the dev stack's environment is filled in first
(:func:`devstack.environment.prepare_environment`, what ``make run`` does), so run from the repo
with no environment at all the CLI talks to ``make run``'s stack with its key ring. An install
without the dev stack reads the environment only, and production never gets a generated key.

Exit codes: 0 done, 1 the engine has a problem (books that do not balance, a nondeterministic
run, a demo scenario off its expected end), 2 a usage error, 3 the command could not be done (a
service unreachable, the API answered an error, the settings are invalid).
"""

from __future__ import annotations

from pydantic import ValidationError

from fulfil.settings import Settings

EXIT_OK = 0
EXIT_FOUND_PROBLEM = 1
EXIT_USAGE = 2
EXIT_FAILED = 3


class OpsError(Exception):
    """A command could not be done; the message is one line that says why and what to try."""

    exit_code = EXIT_FAILED


def load_settings() -> Settings:
    try:
        return Settings()
    except ValidationError as err:
        first = err
    # Unset CODEC_KEYS in a checkout: the key ring `make run` generated under .data/.
    generated = _dev_stack_environment()
    if not generated:
        raise OpsError(f"the settings are not valid: {_reasons(first)}") from first
    try:
        settings = Settings()
    except ValidationError as err:
        raise OpsError(f"the settings are not valid: {_reasons(err)}") from err
    if settings.env == "production" and "CODEC_KEYS" in generated:
        raise OpsError("CODEC_KEYS is not set (production never uses a generated key ring)")
    return settings


def _reasons(err: ValidationError) -> str:
    return "; ".join(str(e["msg"]).removeprefix("Value error, ") for e in err.errors())


def _dev_stack_environment() -> list[str]:
    """What the dev stack's environment filled in (nothing without the dev stack)."""
    try:
        from devstack.environment import prepare_environment
    except ImportError:  # an install without the dev stack: the environment is all there is
        return []
    return prepare_environment()

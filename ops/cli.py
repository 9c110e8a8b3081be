"""The ``fulfil`` ops command line (``fulfil = "ops.cli:main"``; also ``python -m ops.cli``).

Configured like the engine (:mod:`ops.config`): run from the repository with ``make run`` up,
it needs no environment at all. Every command says what went wrong in one line and exits
non-zero (exit codes in :mod:`ops.config`). The process ends with ``os._exit`` once its output
is flushed: temporalio's runtime can abort the interpreter at exit (sdk-python #300).
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Callable, Coroutine
from typing import Annotated, Any

import typer

from fulfil.enums import PayoutStatus
from fulfil.settings import Settings
from ops.config import EXIT_FAILED, EXIT_OK, OpsError, load_settings
from ops.display import err, text

EXIT_INTERRUPTED = 130

app = typer.Typer(
    name="fulfil",
    help="Ops tooling for the fulfil engine: orders, payouts, the books, replay, a live demo.",
    no_args_is_help=True,
    add_completion=False,
    rich_markup_mode="markdown",
)
orders_app = typer.Typer(help="Orders: status, totals, events and their Temporal runs.")
payouts_app = typer.Typer(help="Escrowed payouts: trigger the release run, list them.")
app.add_typer(orders_app, name="orders", no_args_is_help=True)
app.add_typer(payouts_app, name="payouts", no_args_is_help=True)

JsonFlag = Annotated[bool, typer.Option("--json", help="Print the raw JSON instead of tables.")]


def run(command: Callable[[Settings], Coroutine[Any, Any, int | None]]) -> None:
    """Load the settings, run the command's coroutine, and exit with its status."""
    try:
        status = asyncio.run(command(load_settings())) or EXIT_OK
    except OpsError as error:
        err.print(f"[red]fulfil:[/red] {text(error)}")
        status = error.exit_code
    except KeyboardInterrupt:
        err.print("[yellow]fulfil: interrupted[/yellow]")
        status = EXIT_INTERRUPTED
    raise typer.Exit(status)


@orders_app.command("show")
def orders_show(
    order_id: Annotated[str, typer.Argument(help="The engine's order id (ord_...).")],
    as_json: JsonFlag = False,
) -> None:
    """An order: status, totals, payment, shipment, events, and its Temporal runs.

    Storefront and TikTok orders alike; each run (the order's own, its Shipment, its payout)
    with its status and a link into the Temporal UI (TEMPORAL_UI_URL).
    """
    from ops.orders import show_order

    run(lambda settings: show_order(settings, order_id, as_json=as_json))


@payouts_app.command("run")
def payouts_run() -> None:
    """Run the payout-release schedule now (payouts past their hold are released)."""
    from ops.payouts import trigger_payout_run

    run(trigger_payout_run)


@payouts_app.command("list")
def payouts_list(
    status: Annotated[
        PayoutStatus | None, typer.Option("--status", help="Only payouts in this status.")
    ] = None,
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Show at most this many, newest first.")
    ] = 100,
    as_json: JsonFlag = False,
) -> None:
    """Payouts of every merchant, newest first (pages through the API)."""
    from ops.payouts import list_payouts

    payout_status = status.value if status else None
    run(lambda s: list_payouts(s, payout_status=payout_status, limit=limit, as_json=as_json))


@app.command("reconcile")
def reconcile(as_json: JsonFlag = False) -> None:
    """Check the books; exit 1 when anything differs.

    Debits equal credits per order, per payout and overall, and every released payout has
    exactly one matching transfer at Stripe.
    """
    from ops.payouts import reconcile as reconcile_books

    run(lambda settings: reconcile_books(settings, as_json=as_json))


@app.command("replay")
def replay(
    limit: Annotated[
        int, typer.Option("--limit", min=1, help="Runs per workflow type (open and closed).")
    ] = 20,
) -> None:
    """Replay recent runs of every workflow type; exit 1 on nondeterminism.

    Lists the newest open and closed runs of each type the worker registers, fetches their
    histories from Temporal and replays them with this checkout's code and the engine's codec.
    """
    from ops.replay import replay_command

    run(lambda settings: replay_command(settings, limit=limit))


@app.command("demo")
def demo() -> None:
    """Drive live scenarios against `make run`; exit 1 if any ends off its expected state.

    As the demo merchant (.data/demo.json): storefront orders (shipped, declined, cancelled),
    TikTok orders (fulfilled, cancelled by the buyer), a marketplace checkout held and paid
    out, a package deployment that succeeds and one rolled back after an injected fault.
    """
    try:
        from devstack.demo import DEMO_FILE, load_demo
    except ImportError:
        err.print("[red]fulfil:[/red] the demo needs a checkout with the dev stack (devstack/)")
        raise typer.Exit(EXIT_FAILED) from None
    from ops.demo import DemoMerchant, read_package, run_demo

    found = load_demo()
    if found is None:
        err.print(
            f"[red]fulfil:[/red] no demo merchant in {text(DEMO_FILE)}: start the stack with "
            "`make run` (it seeds one)"
        )
        raise typer.Exit(EXIT_FAILED)
    merchant = DemoMerchant(api_key=found.api_key, tiktok_shop_id=found.tiktok_shop_id)
    try:
        package = read_package()
    except OpsError as error:
        err.print(f"[red]fulfil:[/red] {text(error)}")
        raise typer.Exit(error.exit_code) from None
    run(lambda settings: run_demo(settings, merchant, package))


def main() -> None:
    status = EXIT_OK
    try:
        app()
    except SystemExit as exit_:
        code = exit_.code
        if isinstance(code, str):
            err.print(code)
            status = EXIT_FAILED
        else:
            status = code or EXIT_OK
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(status)  # temporalio can abort the interpreter at exit (sdk-python #300)


if __name__ == "__main__":
    main()

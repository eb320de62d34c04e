"""``aidg demo``: simulate, train, evaluate, explain, run the arena, then serve with a simulated client."""

from __future__ import annotations

import shutil
from typing import Annotated

import typer

from aidg.cli.common import (
    JsonOpt,
    app,
    cli_settings,
    emit,
    err,
    print_ablation,
    progress_bar,
    user_errors,
    wide_console,
)
from aidg.cli.data import simulate_report
from aidg.cli.models import print_explanation


@app.command()
def demo(
    seed: Annotated[int, typer.Option(help="Seed of the demo world.")] = 7,
    skip_training: Annotated[bool, typer.Option("--skip-training", help="Only simulate and show the world.")] = False,
    no_serve: Annotated[
        bool, typer.Option("--no-serve", help="Exit after the arena instead of serving the API.")
    ] = False,
    port: Annotated[int, typer.Option(help="Port of the served API (127.0.0.1 only).", min=1, max=65535)] = 8000,
    serve_seconds: Annotated[
        float | None, typer.Option(help="Stop serving after this long (default: until Ctrl-C).", min=0)
    ] = None,
    scale: Annotated[
        str, typer.Option(help="Training budget: small (the default, `aidg train`'s) or tiny (a quick look).")
    ] = "small",
    story: Annotated[
        bool, typer.Option("--story/--no-story", help="Tell the rollout story (good model promoted, bad rolled back).")
    ] = True,
    json_out: JsonOpt = False,
) -> None:
    """Simulate the small world, train the models, serve the API on 127.0.0.1 as soon as they are trained, then show
    the evaluation, an explanation and a short policy arena while it answers, and drive it with a simulated client
    and the rollout story (``--no-serve`` exits after the arena instead)."""
    import time

    from aidg import workflows
    from aidg.demo.run import run_demo, show_arena, show_models

    t0 = time.monotonic()
    s = cli_settings()
    out = s.paths.home / "demo"
    console = None if json_out else wide_console()
    say = console.print if console is not None else err.print
    service = None
    with user_errors():
        if (out / "world").exists():
            shutil.rmtree(out / "world")
        report = simulate_report("small", seed, out / "world", quiet=json_out)
        summary = run_demo(out, report, console=console)
        try:
            if not skip_training:
                with progress_bar("train", json_out) as update:
                    summary["training"] = workflows.train(s, out / "world", scale=scale, seed=0, progress=update)
                if not no_serve:  # the API answers from here on, while the evaluation and the arena are shown
                    from aidg.demo.serving import start_service

                    if console is not None:
                        console.rule("[bold]Serving: the API is up while the models are evaluated")
                    service = start_service(s, out / "world", console or err, port=port, rate=DEMO_RATE, story=story)
                    summary["api_up_seconds"] = round(time.monotonic() - t0, 1)
                    say(f"[bold]API up {summary['api_up_seconds']:.0f} s after the demo started[/] (the simulated "
                        "client and the story start after the arena)")  # fmt: skip
                with progress_bar("evaluate", json_out) as update:
                    summary["evaluation"] = workflows.evaluate(s, out / "world", progress=update)
                merchant = summary["evaluation"].get("example_merchant")
                if merchant is not None:
                    with progress_bar("explain", json_out) as update:
                        summary["explanation"] = workflows.explain(
                            s, out / "world", merchant, change=(0, "discount_pct", 0.4), progress=update
                        )
                with progress_bar("policy arena", json_out) as update:
                    summary["arena"] = workflows.simulate_policy(
                        s, out / "world", rounds=DEMO_ARENA_ROUNDS, days=90, seed=0, progress=update
                    )
                if console is not None:
                    show_models(summary["training"], summary["evaluation"], console)
                    print_ablation(summary["evaluation"].get("ablation", {}))
                    if "explanation" in summary:
                        print_explanation(summary["explanation"], top=5)
                    console.rule("[bold]Choosing among the variants: policies through 90 simulated days, delayed "
                                 "rewards")
                    show_arena(summary["arena"], console, out / "arena.png")
                summary.get("arena", {}).pop("curves", None)
                if service is not None:
                    from aidg.demo.serving import drive

                    if console is not None:
                        console.rule("[bold]Serving: the simulated client through the event stream, the rollout story")
                    summary["serving"] = drive(service, seconds=serve_seconds)
                    service = None
        finally:
            if service is not None:  # the evaluation or the arena failed: the API stops with the demo
                service.stop()
    if json_out:
        emit(summary)


DEMO_RATE = 30.0  # the simulated client's requests per second while serving


DEMO_ARENA_ROUNDS = 5000  # a short arena run; `aidg simulate-policy` runs the full 50k

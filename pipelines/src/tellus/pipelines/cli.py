"""The ``tellus`` command: thin entry points over the libraries."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from tellus.pipelines import data_cli, paths

app = typer.Typer(help="Tellus: Earth-system foundation models in JAX.", no_args_is_help=True)
app.add_typer(data_cli.app, name="data")


@app.command()
def demo(
    preset: Annotated[str, typer.Option(help="Dataset size preset.")] = "default",
    out: Annotated[Path | None, typer.Option(help="Dataset store path.")] = None,
) -> None:
    """The main job on the embedded default: build the atmosphere dataset and summarize it."""
    from tellus.data import describe

    store = out or paths.default_store("atmosphere" if preset == "default"
                                       else f"atmosphere-{preset}")
    data_cli.build_atmosphere(store, preset)
    describe.render(describe.summarize(store))


def main() -> None:
    app()


if __name__ == "__main__":
    main()

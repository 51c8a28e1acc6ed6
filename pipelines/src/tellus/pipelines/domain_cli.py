"""Commands with one subcommand per domain: ``tellus train|forecast|evaluate DOMAIN``.

A :class:`DomainGroup` names the domain as its first argument. A name that is no subcommand
is refused in one line naming the domains the registry knows
(:func:`tellus.training.domains.registered`), or, for a registered domain that this command
does not serve, the domains it does. ``forecast`` and ``evaluate`` were atmosphere-only
before they took a domain: given options and no domain (``tellus forecast --init ...``),
they run the atmosphere's, so the older forms keep working.
"""

from __future__ import annotations

from typing import Any

import typer
import typer.core

from tellus.pipelines.errors import UserError

DEFAULT_DOMAIN = "atmosphere"


def registered_names() -> list[str]:
    """The registered domains' names (their entry points load their ``domain`` modules)."""
    from tellus.training import domains

    return list(domains.registered())


class DomainGroup(typer.core.TyperGroup):
    """``tellus VERB DOMAIN [OPTIONS]``; :attr:`default` is the domain of ``tellus VERB
    [OPTIONS]`` (None: a domain is required)."""

    default: str | None = None

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if self.default is not None:
            bare = not args and not self.no_args_is_help
            if bare or (args and args[0].startswith("-") and args[0] not in ctx.help_option_names):
                args = [self.default, *args]
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> tuple[str | None, Any, list[str]]:
        name = args[0] if args else None
        if name is not None and self.get_command(ctx, name) is None:
            served = ", ".join(self.list_commands(ctx))
            known = registered_names()
            verb = f"tellus {ctx.info_name}"  # (ctx.command_path: the program name as run)
            if name in known:
                raise UserError(
                    f"the domain {name!r} has no `{verb}` command (`{verb}` serves {served})",
                    param="DOMAIN",
                )
            raise UserError(
                f"{name!r} is not a registered domain (registered: {', '.join(known)}; "
                f"`{verb}` serves {served})",
                param="DOMAIN",
            )
        return super().resolve_command(ctx, args)


def domain_group(default: str | None = None) -> type[DomainGroup]:
    """A :class:`DomainGroup` class whose :attr:`~DomainGroup.default` is ``default``."""
    return type("DomainGroup", (DomainGroup,), {"default": default})


def app(help: str, *, default: str | None = None, **kwargs: Any) -> typer.Typer:
    """A typer app of per-domain subcommands (add them with ``app.command("enso")(fn)``)."""
    return typer.Typer(
        cls=domain_group(default),
        help=help,
        no_args_is_help=default is None,
        subcommand_metavar="DOMAIN [ARGS]...",
        **kwargs,
    )


__all__ = ["DEFAULT_DOMAIN", "DomainGroup", "app", "domain_group", "registered_names"]

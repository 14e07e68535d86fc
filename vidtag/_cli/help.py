"""How parameters look in `--help`, set once for every command: arguments by their upper-case names
(`RECORDS`, `[PATH]...`, `NAMES...` in usage lines, never Typer's `{records}`), and flags with no type beside
them (Typer shows `<bool>` for `--overwrite`, which takes no value). `VidtagTyper` gives every command of an
app `HelpCommand`, which shows its parameters this way.
"""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperArgument, TyperCommand, TyperGroup, TyperOption


class _Argument(TyperArgument):
    """An argument shown by its upper-case name; optional ones in brackets, repeatable ones with '...'."""

    @property
    def display_name_raw(self) -> str:
        return self.metavar if self.metavar is not None else (self.name or "").upper()

    def _usage_display_name(self) -> str:
        name = self.display_name_raw.removesuffix("...")
        return (name if self.required else f"[{name}]") + ("..." if self.nargs != 1 else "")


class _Option(TyperOption):
    """A flag (an option that takes no value) shows no type; others keep Typer's `<int>`, `<path>`..."""

    def display_type_rich(self, ctx: Any) -> str | None:
        if self.is_flag and not self.count:
            return None
        return super().display_type_rich(ctx)


def _shown(param: Any) -> Any:
    if type(param) is TyperArgument:
        param.__class__ = _Argument  # the same object (Click keeps it for parsing), shown another way
    elif type(param) is TyperOption:
        param.__class__ = _Option
    return param


class HelpCommand(TyperCommand):
    """A command whose parameters, its --help included, are shown as this module says."""

    def get_params(self, ctx: Any) -> list:
        return [_shown(p) for p in super().get_params(ctx)]


class HelpGroup(TyperGroup):
    """The app's own options (--version, --install-completion) shown as this module says."""

    def get_params(self, ctx: Any) -> list:
        return [_shown(p) for p in super().get_params(ctx)]


class VidtagTyper(typer.Typer):
    """A Typer app whose commands are `HelpCommand`s unless they name another class (and whose own group is
    a `HelpGroup`)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("cls", HelpGroup)
        super().__init__(*args, **kwargs)

    def command(self, *args: Any, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(*args, cls=cls or HelpCommand, **kwargs)

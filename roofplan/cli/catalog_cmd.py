"""Placeholder: the command is registered here once implemented."""


def register(group) -> None:  # noqa: ARG001
    return None

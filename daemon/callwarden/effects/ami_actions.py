"""A command's AMI action, and the check that it still targets the channel decided on. Pure."""

from __future__ import annotations

from collections.abc import Callable

from callwarden.policy.commands import AmiCommand, Hangup, QueuePause, Redirect, SetVar

ChannelIsCurrent = Callable[[str, str], bool]  # (name, Uniqueid) -> that name is still that channel


def ami_action(command: AmiCommand) -> dict[str, str]:
    """The AMI action for a command (checked for injection when sent).

    A Hangup names the channel by its Uniqueid when it has one (Asterisk's Hangup takes one in
    ``Channel``): a name may have been given to a later call by the time it arrives."""
    match command:
        case SetVar(channel=None, name=name, value=value):
            return {"Action": "Setvar", "Variable": name, "Value": value}
        case SetVar(channel=str() as channel, name=name, value=value):
            return {"Action": "Setvar", "Channel": channel, "Variable": name, "Value": value}
        case Hangup(channel=channel, cause=cause, uniqueid=uniqueid):
            return {"Action": "Hangup", "Channel": uniqueid or channel, "Cause": str(cause)}
        case QueuePause(interface=interface, queue=queue, paused=paused, reason=reason):
            action = {"Action": "QueuePause", "Interface": interface, "Queue": queue, "Paused": str(paused).lower()}
            return action | {"Reason": reason} if reason else action
        case Redirect():
            action = {
                "Action": "Redirect",
                "Channel": command.channel,
                "Context": command.context,
                "Exten": "s",
                "Priority": "1",
            }
            if command.extra_channel is not None and command.extra_context is not None:
                action |= {
                    "ExtraChannel": command.extra_channel,
                    "ExtraContext": command.extra_context,
                    "ExtraExten": "s",
                    "ExtraPriority": "1",
                }
            return action
    raise TypeError(command)  # pragma: no cover


def targets(command: AmiCommand) -> list[tuple[str, str]]:
    """The (channel name, Uniqueid) pairs a command acts on."""
    match command:
        case SetVar(channel=None) | QueuePause():
            return []
        case SetVar(channel=str() as channel, uniqueid=uniqueid) | Hangup(channel=channel, uniqueid=uniqueid):
            return [(channel, uniqueid)]
        case Redirect():
            pairs = [(command.channel, command.uniqueid)]
            if command.extra_channel is not None:
                pairs.append((command.extra_channel, command.extra_uniqueid))
            return pairs
    raise TypeError(command)  # pragma: no cover


def stale_target(commands: list[AmiCommand], is_current: ChannelIsCurrent) -> str | None:
    """The first channel of ``commands`` that is no longer the channel decided on, if any."""
    for command in commands:
        for name, uniqueid in targets(command):
            if not is_current(name, uniqueid):
                return name
    return None

"""``moeflux chat``: an interactive conversation in the terminal. Replies stream; /reset, /save FILE,
/load FILE, /help and /quit act on the conversation; tool calls are shown and run only after the
person confirms (a tool's "command" gets the arguments as JSON on stdin; without one, the person
types the result)."""

from __future__ import annotations

import argparse
import json
import shlex
import subprocess
from typing import Any

from .cli_commands import load_tools, open_model, print_tool_call, sampling_kwargs, template_kwargs
from .errors import Error, FormatError

HELP = "commands: /reset (forget the conversation), /save FILE, /load FILE, /help, /quit (or Ctrl-D)"
MAX_TOOL_ROUNDS = 8  # tool calls answered in a row before the turn goes back to the person


def _stream(stream: Any) -> Any:
    """Prints a reply as it streams; returns its Completion."""
    print("", end="", flush=True)
    try:
        for chunk in stream:
            print(chunk.text, end="", flush=True)
    except KeyboardInterrupt:
        print("\n[interrupted]")
        return None
    print()
    return stream.completion


def _run_tool(call: Any, command: str | None) -> Any:
    """Asks first; runs the tool's command, or asks the person for the result."""
    print_tool_call(call)
    if input(f"run {call.name}? [y/N] ").strip().lower() not in ("y", "yes"):
        return {"error": "the user declined to run this tool"}
    if not command:
        return input(f"result of {call.name}: ")
    try:
        done = subprocess.run(shlex.split(command), input=json.dumps(call.arguments), capture_output=True, text=True,
                              timeout=120)
    except (OSError, subprocess.TimeoutExpired) as error:
        return {"error": f"the tool could not run: {error}"}
    result = done.stdout.strip() if done.returncode == 0 else f"error (exit {done.returncode}): {done.stderr.strip()}"
    print(f"[tool result] {result}")
    return result


def _command(line: str, chat: Any) -> bool:
    """Runs a /command; False for /quit."""
    name, _, argument = line.partition(" ")
    argument = argument.strip()
    if name in ("/quit", "/exit"):
        return False
    if name == "/reset":
        chat.reset()
        print("[conversation forgotten]")
    elif name in ("/save", "/load"):
        if not argument:
            print(f"usage: {name} FILE")
        elif name == "/save":
            chat.save(argument)
            print(f"[saved {len(chat.messages)} messages and {chat.model.n_past} tokens of state to {argument}]")
        else:
            chat.load(argument)
            print(f"[loaded {len(chat.messages)} messages and {chat.model.n_past} tokens of state]")
    else:
        print(HELP)
    return True


def chat(args: argparse.Namespace) -> int:
    model = open_model(args)
    if model.chat_template is None:
        raise FormatError(f"{args.model} has no chat template; use `moeflux generate` for plain text")
    tools = load_tools(args.tools) if args.tools else []
    commands = {t["function"].get("name"): t.get("command") for t in tools}
    schemas = [{k: v for k, v in t.items() if k != "command"} for t in tools]
    conversation = model.chat(system=args.system, tools=schemas or None, **template_kwargs(args))
    options = sampling_kwargs(args)
    print(f"moeflux chat with {args.model}. {HELP}")
    while True:
        try:
            line = input("> ")
        except EOFError:
            print()
            return 0
        except KeyboardInterrupt:
            print()
            return 0
        if not line.strip():
            continue
        try:
            if line.startswith("/"):
                if not _command(line.strip(), conversation):
                    return 0
                continue
            reply = _stream(conversation.send(line, stream=True, **options))
            rounds = 0
            while reply is not None and reply.tool_calls and rounds < MAX_TOOL_ROUNDS:
                for call in reply.tool_calls:
                    conversation.add_tool_result(call, _run_tool(call, commands.get(call.name)))
                reply = _stream(conversation.send(stream=True, **options))
                rounds += 1
        except (Error, OSError) as error:  # the conversation goes on; one line says what failed
            print(f"moeflux: {type(error).__name__}: {error}")

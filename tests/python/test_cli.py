"""The command line, driven as a person would: each command's happy path and one bad input, and
`chat` through a pseudo-terminal. Errors must be one line on stderr, never a traceback."""

from __future__ import annotations

import json
import os
import pty
import select
import shutil
import subprocess
import sys
import time

import pytest

import chat_models
from moeflux import cli_chat
from moeflux.tool_calls import ToolCall


def moeflux_cli(*args: str, stdin: str | None = None, timeout: int = 300) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "moeflux", *args], capture_output=True, text=True, input=stdin,
                          timeout=timeout, env=os.environ.copy())


def assert_one_line_error(done: subprocess.CompletedProcess, fragment: str) -> None:
    assert done.returncode == 1, (done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("moeflux: ") and fragment in lines[0], done.stderr


@pytest.fixture(scope="module")
def chat_model(tmp_path_factory):
    return chat_models.chat_model(tmp_path_factory)[1]


def test_generate_streams_a_continuation(chat_model):
    done = moeflux_cli("generate", str(chat_model), "Hello", "--max-new-tokens", "5", "--greedy")
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("Hello") and "[length: 5 tokens" in done.stderr
    chat = moeflux_cli("generate", str(chat_model), "-", "--chat", "--system", "Be brief.", "--no-thinking",
                       "--max-new-tokens", "3", "--temperature", "0.8", "--seed", "1", stdin="Hi there")
    assert chat.returncode == 0, chat.stderr


def test_generate_bad_inputs(chat_model, tmp_path):
    assert_one_line_error(moeflux_cli("generate", str(tmp_path / "missing"), "Hello"), "not a directory")
    assert_one_line_error(moeflux_cli("generate", str(chat_model), "Hello", "--top-p", "0"), "top_p")


def test_chat_through_a_terminal(chat_model, tmp_path):
    master, slave = pty.openpty()
    proc = subprocess.Popen([sys.executable, "-m", "moeflux", "chat", str(chat_model), "--greedy", "--max-new-tokens", "4",
                             "--system", "Be brief."], stdin=slave, stdout=slave, stderr=slave, env=os.environ.copy(),
                            close_fds=True)
    os.close(slave)
    seen = ""

    def expect(text: str, timeout: float = 300) -> str:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while text not in seen:
            ready, _, _ = select.select([master], [], [], max(0.0, deadline - time.monotonic()))
            assert ready, f"waited for {text!r}; the terminal shows {seen[-2000:]!r}"
            try:
                data = os.read(master, 4096)
            except OSError:  # the child closed the terminal
                break
            seen += data.decode(errors="replace")
        assert text in seen, seen[-2000:]
        cut = seen.index(text) + len(text)
        before, seen = seen[:cut], seen[cut:]
        return before

    def say(line: str) -> None:
        os.write(master, (line + "\n").encode())

    try:
        expect("/reset")
        expect("> ")
        say("Hello")
        expect("> ")
        state = tmp_path / "talk.mfstate"
        say(f"/save {state}")
        assert "[saved 3 messages" in expect("> ")
        say("/reset")
        assert "[conversation forgotten]" in expect("> ")
        say(f"/load {state}")
        assert "[loaded 3 messages" in expect("> ")
        say(f"/load {tmp_path / 'missing.mfstate'}")
        assert "moeflux: IoError" in expect("> ")  # a bad command says so, and the chat goes on
        say("/help")
        assert "/save FILE" in expect("> ")
        say("/quit")
        assert proc.wait(timeout=60) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
        os.close(master)


def test_chat_without_a_template_is_refused(packed):
    assert_one_line_error(moeflux_cli("chat", str(packed("qwen3_moe_base"))), "no chat template")


def test_tool_calls_run_only_after_confirmation(monkeypatch, tmp_path):
    call = ToolCall("shout", {"city": "paris"}, id="call_0")
    command = f"{sys.executable} -c \"import json, sys; print(json.load(sys.stdin)['city'].upper())\""
    answers = iter(["n"])
    monkeypatch.setattr("builtins.input", lambda prompt="": next(answers))
    assert cli_chat._run_tool(call, command) == {"error": "the user declined to run this tool"}
    answers = iter(["y"])
    assert cli_chat._run_tool(call, command) == "PARIS"
    answers = iter(["yes", "typed by hand"])
    assert cli_chat._run_tool(call, None) == "typed by hand"


def test_tools_file_is_checked(chat_model, tmp_path):
    (tmp_path / "tools.json").write_text(json.dumps({"not": "a list"}))
    assert_one_line_error(moeflux_cli("generate", str(chat_model), "hi", "--tools", str(tmp_path / "tools.json")),
                          "JSON list")


def test_bench_reports_speed_and_hit_rates(chat_model):
    done = moeflux_cli("bench", str(chat_model), "--prompt-tokens", "16", "--new-tokens", "4")
    assert done.returncode == 0, done.stderr
    for text in ("prefill", "decode", "tok/s", "expert hit rate", "waiting"):
        assert text in done.stdout, done.stdout
    assert_one_line_error(moeflux_cli("bench", str(chat_model), "--new-tokens", "0"), "at least 1")


def test_info_shows_contents_and_memory(chat_model, tmp_path):
    done = moeflux_cli("info", str(chat_model))
    assert done.returncode == 0, done.stderr
    for text in ("model type     qwen3_moe", "kv cache", "tokenizer      ", "chat template  yes", "checksums      yes"):
        assert text in done.stdout, done.stdout
    assert_one_line_error(moeflux_cli("info", str(tmp_path)), "Error")


def test_verify_checks_every_file(chat_model, tmp_path):
    done = moeflux_cli("verify", str(chat_model), "--quiet")
    assert done.returncode == 0 and "every file matches" in done.stdout, done.stderr
    copy = tmp_path / "copy"
    shutil.copytree(chat_model, copy)
    with open(copy / "dense.bin", "r+b") as f:
        f.seek(100)
        byte = f.read(1)
        f.seek(100)
        f.write(bytes([byte[0] ^ 0xFF]))
    bad = moeflux_cli("verify", str(copy), "--quiet")
    assert bad.returncode == 1 and "dense.bin: checksum mismatch" in bad.stderr and "Traceback" not in bad.stderr
    (copy / "checksums.json").unlink()
    assert_one_line_error(moeflux_cli("verify", str(copy), "--quiet"), "verify --write")
    assert moeflux_cli("verify", str(copy), "--write", "--quiet").returncode == 0
    assert moeflux_cli("verify", str(copy), "--quiet").returncode == 0


def test_devices_lists_or_says_none():
    done = moeflux_cli("devices")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip()
    bad = moeflux_cli("devices", "--bogus")
    assert bad.returncode == 2 and "unrecognized arguments" in bad.stderr and "Traceback" not in bad.stderr


def test_every_option_has_help():
    from moeflux.cli import build_parser

    commands = next(a for a in build_parser()._actions if a.dest == "command")
    for name, parser in commands.choices.items():
        for action in parser._actions:
            assert action.help, f"moeflux {name} {action.option_strings or action.dest} has no help"

"""The README's commands, run as a newcomer runs them: every fenced shell block marked `<!-- runnable -->` is run
with bash against the production server, started as `make run` starts it, from a copy of the project (so that its
`instance/` folder, database and token are the copy's own), with signatures on.

In a block whose lines start with `$ `, those lines are the commands and the lines after each are its output as
the README shows it: each shown line must appear in what the command printed (numbers may differ: timings, ids;
a line of `...` stands for lines left out). A block without prompts is a script run as a whole. Either way every
command must succeed. The README's address, http://127.0.0.1:3000, is the test server's.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass

import pytest

from conftest import ROOT
from support.production import SECRET, short_tmpdir, stop_group, wait_until
from support.servers import free_port, run_env, wait_until_listening

README = ROOT / "README.md"
MARK = "<!-- runnable -->"
STEP_END = "@@ end of a README step @@"
README_ADDRESS = "127.0.0.1:3000"
# What a copy of the project leaves out: what make builds, what the server makes, and the repository itself.
NOT_COPIED = shutil.ignore_patterns(
    ".git",
    ".env",
    ".venv",
    "instance",
    "test-artifacts",
    "__pycache__",
    ".pytest_cache",
    ".ruff_cache",
    "results",
    ".anchor-cache",
)


@dataclass(frozen=True)
class Step:
    """One command of a runnable block, and the output the README shows for it."""

    command: str
    shown: tuple[str, ...]
    line: int


def runnable_blocks(text: str) -> list[list[Step]]:
    """The steps of every fenced block that follows the runnable mark (blank lines between are allowed)."""
    lines = text.splitlines()
    blocks, index, marked = [], 0, False
    while index < len(lines):
        line = lines[index].strip()
        if line == MARK:
            marked = True
        elif line.startswith("```"):
            end = lines.index("```", index + 1)
            if marked:
                blocks.append(block_steps(lines[index + 1 : end], index + 2))
            marked, index = False, end
        elif line:
            marked = False
        index += 1
    return blocks


def block_steps(body: list[str], first_line: int) -> list[Step]:
    if not any(line.startswith("$ ") for line in body):
        return [Step("\n".join(body), (), first_line)]
    steps: list[Step] = []
    for number, line in enumerate(body, first_line):
        if steps and steps[-1].command.endswith("\\") and not steps[-1].shown:
            last = steps[-1]  # a command continued on the next line
            steps[-1] = Step(f"{last.command}\n{line}", (), last.line)
        elif line.startswith("$ "):
            steps.append(Step(line[2:], (), number))
        elif steps and line.strip():
            last = steps[-1]
            steps[-1] = Step(last.command, (*last.shown, line), last.line)
    return steps


def shown_pattern(line: str) -> re.Pattern:
    """A line of shown output as a pattern: runs of spaces match any spacing, numbers any number, and `...` within
    a line any text (an id, say)."""
    return re.compile(".*?".join(_literal_pattern(part) for part in line.strip().split("...")))


def _literal_pattern(text: str) -> str:
    pattern = ""
    for part in re.split(r"(\s+|\d+(?:\.\d+)?)", text):
        if not part:
            continue
        if part.isspace():
            pattern += r"\s+"
        elif re.fullmatch(r"\d+(?:\.\d+)?", part):
            pattern += r"\d+(?:\.\d+)?"
        else:
            pattern += re.escape(part)
    return pattern


def missing_output(shown: tuple[str, ...], printed: str) -> list[str]:
    return [line for line in shown if line.strip() not in ("", "...") and not shown_pattern(line).search(printed)]


def test_the_readme_has_runnable_blocks_and_each_is_parsed():
    blocks = runnable_blocks(README.read_text())
    commands = [step.command for block in blocks for step in block]
    assert len(blocks) >= 4, "the README's try-it, endpoint and call-log examples are marked runnable"
    assert any(command.startswith("flask simulate") for command in commands)
    assert all(command.strip() for command in commands)


def test_shown_output_matches_with_other_numbers_but_not_other_words():
    printed = "event   busy (outbound)        ->  200  3.7 ms\nHTTP/1.1 204 No Content\n"
    assert missing_output(("event busy (outbound) -> 200  2.2 ms", "HTTP/1.1 204 No Content", "..."), printed) == []
    assert missing_output(("event   answered (outbound)  ->  200  2.2 ms",), printed) != []
    assert missing_output(("HTTP/1.1 ... Content",), printed) == []
    assert missing_output(("HTTP/1.1 ... Contents",), printed) != []


@pytest.fixture(scope="module")
def newcomer(tmp_path_factory):
    """A copy of the project, and `make run`'s server started in it with signatures on and nothing else set."""
    project = tmp_path_factory.mktemp("readme") / "project"
    shutil.copytree(ROOT, project, ignore=NOT_COPIED)
    port, tmpdir = free_port(), short_tmpdir()
    env = run_env(PORT=str(port), WORKERS="1", VONAGE_SIGNATURE_SECRET=SECRET, TMPDIR=str(tmpdir))
    for name in (
        "DATABASE_URL",
        "CALL_LOG_TOKEN",
        "INSTANCE_PATH",
        "INBOUND_ROUTES",
        "CALLABLE_USERS",
    ):
        env.pop(name, None)
    env["PATH"] = f"{ROOT / '.venv' / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    log = project / "server.log"
    with open(log, "wb") as output:
        process = subprocess.Popen(
            [str(ROOT / ".venv" / "bin" / "python"), "serve.py"],
            cwd=project,
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=output,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        wait_until_listening(port, process)
        wait_until(
            lambda: "Started worker-1" in log.read_text(errors="replace"), 60, "the worker did not start", process
        )
        yield project, port, env
    finally:
        stop_group(process)
        shutil.rmtree(tmpdir, ignore_errors=True)


BLOCKS = runnable_blocks(README.read_text())


@pytest.mark.parametrize("block", BLOCKS, ids=[f"README line {block[0].line}" for block in BLOCKS])
def test_each_runnable_block_of_the_readme_works(newcomer, block):
    """A block's commands run in one shell, one after another, as a reader types them (a variable set by one is
    there for the next); each must succeed and print what the README shows for it."""
    project, port, env = newcomer
    script = "".join(
        f"{step.command.replace(README_ADDRESS, f'127.0.0.1:{port}')}\nprintf '\\n{STEP_END}\\n'\n" for step in block
    )
    run = subprocess.run(
        ["bash", "-e", "-o", "pipefail", "-c", script],
        cwd=project,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        timeout=300,
    )
    outputs = run.stdout.split(f"\n{STEP_END}\n")
    for step, printed in zip(block, outputs):
        where = f"README line {step.line}: {step.command}"
        finished = len(outputs) > block.index(step) + 1
        assert finished, f"{where} exited with {run.returncode}:\n{printed[-3000:]}"
        missing = missing_output(tuple(line.replace("3000", str(port)) for line in step.shown), printed)
        assert not missing, f"{where} did not print what the README shows: {missing}\nit printed:\n{printed[-3000:]}"
    assert run.returncode == 0, run.stdout[-3000:]


def shown_output_blocks(text: str) -> list[tuple[int, bool]]:
    """(line, accounted for) of every fenced block that shows a command's output: a `$ ` line followed by a line
    that is not another command. Accounted for: marked runnable (the test above runs it), or followed by a line
    saying it is an illustration."""
    lines = text.splitlines()
    found, index = [], 0
    while index < len(lines):
        if lines[index].strip().startswith("```"):
            end = next(i for i in range(index + 1, len(lines)) if lines[i].strip().startswith("```"))
            body = lines[index + 1 : end]
            shows = any(
                line.startswith("$ ") and following.strip() and not following.startswith(("$ ", "  ", "#"))
                for line, following in zip(body, body[1:])
            )
            if shows:
                before = next((lines[i].strip() for i in range(index - 1, -1, -1) if lines[i].strip()), "")
                after = next((lines[i].strip() for i in range(end + 1, len(lines)) if lines[i].strip()), "")
                found.append((index + 1, before == MARK or after.startswith("(an illustration")))
            index = end
        index += 1
    return found


DOCUMENTS = [README, *sorted((ROOT / "docs").glob("*.md"))]


@pytest.mark.parametrize("document", DOCUMENTS, ids=lambda path: path.name)
def test_every_example_output_is_run_by_the_tests_or_marked_as_an_illustration(document):
    """Docs that cannot drift: output a reader may take for what the server prints today is either checked against
    it (runnable) or says that it is not."""
    loose = [line for line, accounted in shown_output_blocks(document.read_text()) if not accounted]
    assert not loose, f"{document.name}: example output neither runnable nor marked as an illustration, lines {loose}"

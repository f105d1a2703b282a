"""Instruct work on the chat model: which code actions apply, their prompts, and running them.

Listing actions never touches the model. Running one renders a prompt with the chat model's own
template (cross-file context from the engine first), streams the answer with a CancelToken, and
turns the fenced code into minimal, syntax-checked edits (context/edits.py). No pygls here; the
handlers in actions.py call these functions off the event loop (issue 6).
"""

from __future__ import annotations

import logging
import re
from collections.abc import Callable
from pathlib import Path

import msgspec

from codeflow.context import edits
from codeflow.context.api import ContextEngineAPI
from codeflow.context.edits import EditPlan
from codeflow.context.errors import EditRejectedError, PositionError
from codeflow.context.postprocess import degenerate_phrase
from codeflow.context.prompt import BuiltPrompt, render_chat
from codeflow.lsp_server.assistant.layout import prompt_format
from codeflow.lsp_server.assistant.jobs import Cancelled, Job
from codeflow.quant.backend import Backend, ChatMessage, GenOptions, GenStats, Prompt
from codeflow.quant.errors import DegenerateAnswerError, EmptyPromptError, ModelNotFoundError, PromptTooLongError

log = logging.getLogger(__name__)
# A rewrite quotes the code its prompt holds: guess up to this many tokens from the prompt per
# step (issue 16 §4). The backend uses the guesses only where they cannot change the answer.
LOOKUP_TOKENS = 8
MAX_DIAGNOSTICS = 5
# Without a function around the cursor, a quick fix sees this many lines either side.
FIX_WINDOW = 3
ACTION_MIN_TOKENS = 256
ACTION_MAX_TOKENS = 2048
# Chat templates add a few tokens per message beyond their text; keep this much spare.
PROMPT_MARGIN_TOKENS = 32
SYSTEM = (
    "You are an expert {language} programmer. You rewrite the code the user shows, exactly as asked. "
    "Reply with one fenced code block holding the complete rewritten code, and nothing else."
)


class Kind(msgspec.Struct, kw_only=True, frozen=True):
    """One action Codeflow can offer: its title, LSP kind and what the model is told."""

    id: str
    title: str
    kind: str
    instruction: str


KINDS = {
    k.id: k
    for k in (
        Kind(id="fix", title="Fix with AI: {message}", kind="quickfix",
             instruction="Fix this problem that {source}reports at line {line}, column {col} "
                         "(to line {end_line}, column {end_col}): {message}\nChange nothing else."),
        Kind(id="extract", title="Extract function (AI)", kind="refactor.extract",
             instruction="Move lines {sel_start}-{sel_end} of the file (shown below) into a new function "
                         "with a clear name, and call it where those lines were. Reply with the new "
                         "function followed by the rewritten code.\nThe lines to extract:\n{selected}"),
        Kind(id="document", title="Add docstring and type hints (AI)", kind="refactor.rewrite",
             instruction="Add a concise docstring and type hints to this code. Do not change its behaviour."),
        Kind(id="simplify", title="Simplify (AI)", kind="refactor.rewrite",
             instruction="Simplify and modernise this code. Keep its behaviour exactly the same."),
        Kind(id="to_comprehension", title="Convert loop to comprehension (AI)", kind="refactor.rewrite",
             instruction="Rewrite the for-loops that build a list, set or dict here as comprehensions. "
                         "Keep the behaviour the same."),
        Kind(id="to_loop", title="Convert comprehension to loop (AI)", kind="refactor.rewrite",
             instruction="Rewrite the comprehensions here as plain for-loops. Keep the behaviour the same."),
        Kind(id="rename", title="Suggest clearer names (AI)", kind="refactor.rewrite",
             instruction="Rename unclear local variables and parameters to clear, descriptive names. "
                         "Do not rename the function itself or anything used outside it."),
    )
}
_LOOP = re.compile(r"^\s*for\s.+:\s*$", re.M)
_COMPREHENSION = re.compile(r"[\[{(][^\n\]})]*\sfor\s[^\n]+\sin\s")


class DiagnosticInfo(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """A diagnostic from the code-action context; positions 0-based."""

    message: str
    line: int
    character: int
    end_line: int
    end_character: int
    source: str = ""


class ActionData(msgspec.Struct, kw_only=True, frozen=True, rename="camel"):
    """What a listed action carries to resolve or to `codeflow.runAction`; lines 0-based, inclusive."""

    uri: str
    action: str
    start_line: int
    end_line: int
    sel_start: int = -1
    sel_end: int = -1
    version: int | None = None
    diagnostic: DiagnosticInfo | None = None
    # The region's fingerprint at listing time, so a resolve after the user typed finds it again
    # by content instead of trusting line numbers from an older version (issue 11).
    region_hash: str = ""
    region_chars: int = -1


class Offer(msgspec.Struct, kw_only=True, frozen=True):
    """A listed action: title, kind and data."""

    title: str
    kind: str
    data: ActionData


class Stats(GenStats, kw_only=True):
    """Timings of the last instruct job (for `codeflow/instructStats`, tests and benchmarks)."""

    task: str = ""
    model: str = ""


# Listing ---------------------------------------------------------------------------------------


def list_actions(uri: str, version: int | None, text: str, language: str, start: tuple[int, int],
                 end: tuple[int, int], diagnostics: list[DiagnosticInfo]) -> list[Offer]:
    """The actions for a range (0-based (line, col) points) and its diagnostics; no model call."""
    lines = edits.split_lines(text)
    count = max(len(lines), 1) + (1 if text.endswith("\n") else 0)
    for line, col in (start, end):
        if not 0 <= line < count or col < 0:
            raise PositionError(f"position {line}:{col} is outside the document ({count} lines)")
    if end < start:
        raise PositionError(f"the range ends ({end}) before it starts ({start})")
    last = max(len(lines) - 1, 0)
    offers = [_fix(uri, version, text, language, d, last) for d in diagnostics[:MAX_DIAGNOSTICS]]
    offers += _refactors(uri, version, text, language, start, end, last)
    return offers


def _fix(uri: str, version: int | None, text: str, language: str, diag: DiagnosticInfo, last: int) -> Offer:
    target = edits.enclosing_definition(language, text, min(diag.line, last))
    if target is not None and target.kind != "class":
        first, final = target.start_line, target.end_line
    else:
        first, final = max(diag.line - FIX_WINDOW, 0), min(diag.end_line + FIX_WINDOW, last)
    final = min(final, last)
    data = _fingerprinted(text, ActionData(uri=uri, action="fix", start_line=min(first, final), end_line=final,
                                           version=version, diagnostic=diag))
    title = KINDS["fix"].title.format(message=diag.message.split("\n", 1)[0][:80])
    return Offer(title=title, kind="quickfix", data=data)


def _refactors(uri: str, version: int | None, text: str, language: str, start: tuple[int, int],
               end: tuple[int, int], last: int) -> list[Offer]:
    sel_end = end[0] - 1 if end[1] == 0 and end[0] > start[0] else end[0]
    sel_end = min(sel_end, last)
    selected = start != end and edits.line_span(text, start[0], sel_end).strip() != ""
    target = edits.enclosing_definition(language, text, min(start[0], last))
    if selected:
        first, final = start[0], sel_end
    elif target is not None:
        first, final = target.start_line, target.end_line
    else:
        return []
    region = edits.line_span(text, first, final)
    ids = ["document", "simplify", "rename"]
    if language == "python" and _LOOP.search(region):
        ids.append("to_comprehension")
    if language == "python" and _COMPREHENSION.search(region):
        ids.append("to_loop")
    shared = _fingerprinted(text, ActionData(uri=uri, action="", start_line=first, end_line=final, version=version))
    offers = [Offer(title=KINDS[i].title, kind=KINDS[i].kind, data=msgspec.structs.replace(shared, action=i))
              for i in ids]
    if selected:
        outer = (target.start_line, target.end_line) if target is not None and target.kind != "class" else None
        first, final = outer if outer and outer[0] <= start[0] and sel_end <= outer[1] else (first, final)
        data = _fingerprinted(text, ActionData(uri=uri, action="extract", start_line=first, end_line=final,
                                               sel_start=start[0], sel_end=sel_end, version=version))
        offers.insert(0, Offer(title=KINDS["extract"].title, kind="refactor.extract", data=data))
    return offers


def _fingerprinted(text: str, data: ActionData) -> ActionData:
    region = edits.line_span(text, data.start_line, data.end_line)
    return msgspec.structs.replace(data, region_hash=edits.region_hash(region), region_chars=len(region))


def relocate(data: ActionData, text: str, version: int | None) -> ActionData:
    """The action aimed at `text` (the document now): as listed when nothing changed, else moved to
    where its region now is, found by content exactly once; raises EditRejectedError otherwise."""
    n_lines = data.end_line - data.start_line + 1
    if not data.region_hash:
        if data.version is not None and data.version != version:
            raise EditRejectedError(f"the code changed since the action was offered (version {data.version}, "
                                    f"now {version})")
        return data
    if data.version == version:
        region = edits.line_span(text, data.start_line, data.end_line)
        if edits.region_hash(region) == data.region_hash:
            return data
    start = edits.locate_region(text, data.region_hash, n_lines, data.region_chars, data.start_line)
    return shifted(data, start - data.start_line)


def shifted(data: ActionData, delta: int) -> ActionData:
    """The same action with every line moved by `delta` (the region moved, its content did not)."""
    d = data.diagnostic
    diag = msgspec.structs.replace(d, line=d.line + delta, end_line=d.end_line + delta) if d else None
    sel_start, sel_end = (data.sel_start + delta, data.sel_end + delta) if data.sel_start >= 0 else (-1, -1)
    return msgspec.structs.replace(data, start_line=data.start_line + delta, end_line=data.end_line + delta,
                                   sel_start=sel_start, sel_end=sel_end, diagnostic=diag)


# Prompts ---------------------------------------------------------------------------------------


def action_prompt(backend: Backend, data: ActionData, text: str, language: str, path: str,
                  context: str) -> BuiltPrompt:
    """The chat prompt for one action, in the model's own template, with the answer fence prefilled."""
    kind = KINDS.get(data.action)
    if kind is None:
        raise ValueError(f"unknown action {data.action!r}")
    d = data.diagnostic
    instruction = kind.instruction.format(
        message=d.message if d else "", source=f"{d.source} " if d and d.source else "",
        line=d.line + 1 if d else 0, col=d.character + 1 if d else 0,
        end_line=d.end_line + 1 if d else 0, end_col=d.end_character + 1 if d else 0,
        sel_start=data.sel_start + 1, sel_end=data.sel_end + 1,
        selected=f"```{language}\n{edits.line_span(text, data.sel_start, data.sel_end)}```"
        if data.sel_start >= 0 else "",
    )
    region = edits.line_span(text, data.start_line, data.end_line)
    context_part = f"Code from other files that this code uses:\n{context}\n" if context.strip() else ""
    user = (f"{context_part}File: {path}, lines {data.start_line + 1}-{data.end_line + 1}:\n"
            f"```{language}\n{region}```\n\n{instruction}")
    return chat_prompt(backend, SYSTEM.format(language=language), user, prefill=f"```{language}\n")


def chat_prompt(backend: Backend, system: str, user: str, prefill: str = "") -> BuiltPrompt:
    """System + user messages, rendered with the chat model's template; raises when it has none.

    A backend that cannot continue a prefilled answer (a chat endpoint) gets no prefill: its
    model opens the fence itself, so the fence cannot be a stop string there.
    """
    info = chat_info(backend)
    fmt = prompt_format(info)
    if not info.chat_template:
        raise ModelNotFoundError(f"the chat model {info.name} has no chat template; "
                                 "set model.chatPath to an instruct GGUF")
    prefill = prefill if info.prefill else ""
    messages = [{"role": "system", "content": system}, {"role": "user", "content": user}]
    text = render_chat(msgspec.structs.replace(fmt, chat_template=info.chat_template), messages)
    stops = (("```",) if prefill else ()) + ((info.eos,) if info.eos else ())
    return BuiltPrompt(text=text + prefill, kind="chat", stop=stops, prefill=prefill,
                       messages=tuple((m["role"], m["content"]) for m in messages))


def backend_prompt(built: BuiltPrompt, key: str = "") -> Prompt:
    """The backend's view of a built prompt; an empty one is refused, never sent."""
    messages = tuple(ChatMessage(role=role, content=content) for role, content in built.messages)
    # A rendered template is never empty, so a chat prompt is judged by what the user says.
    said = [m.content for m in messages if m.role == "user"] if messages else [built.text]
    if not any(text.strip() for text in said):
        raise EmptyPromptError("refusing to send an empty prompt to the model")
    return Prompt(text=built.text, kind=built.kind, key=key, messages=messages)


def chat_info(backend: Backend):  # noqa: ANN201 - ModelInfo
    """The chat model's info (loads it); a model that cannot run raises with the reason."""
    info = backend.info
    if info.name == "none" and info.device == "none":
        status = getattr(backend, "status", None)
        reason = getattr(status, "message", "") or "no chat model could start"
        raise ModelNotFoundError(f"the chat model is unavailable: {reason}")
    return info


# Running ---------------------------------------------------------------------------------------


def generate(backend: Backend, built: BuiltPrompt, opts: GenOptions, job: Job[Stats],
             on_text: Callable[[str], None] = lambda text: None, key: str = "", prose: bool = False) -> str:
    """Stream an answer into `job`, calling `on_text` with the text so far; raises Cancelled when
    the job was cancelled.

    Prose (an explanation) that starts looping is stopped and raised as DegenerateAnswerError:
    a 135M model wrote "Flask-Flask-Python-Python-..." until its token limit (issue 14).
    """
    def stop_after(text: str, piece: str) -> bool:
        loop = degenerate_phrase(text) if prose and piece.strip() else None
        if loop is not None:
            raise DegenerateAnswerError(
                f"the chat model's answer degenerated (it kept repeating \"{loop}\"); a larger chat "
                "model would help: set model.chatPath (`codeflow model list` shows what fits)")
        on_text(text)
        return False

    text = job.stream(backend, backend_prompt(built, key), opts, stop_after)
    if job.cancel.cancelled:
        raise Cancelled()
    if not text:
        chat_info(backend)  # a backend that failed while generating says why here
        raise ModelNotFoundError("the chat model produced no text")
    return text


def run_action(backend: Backend, data: ActionData, text: str, language: str, path: str,
               context_for: Callable[[int], str], job: Job[Stats], on_text: Callable[[str], None]) -> EditPlan:
    """Blocking: the checked edit plan for one action on `text` (the version the request saw).

    `context_for(tokens)` renders cross-file context within a token budget; it gets what the
    model's context has left once the code, the instruction and the answer are counted.
    """
    region = edits.line_span(text, data.start_line, data.end_line)
    max_tokens = min(backend.count_tokens(region) * 2 + ACTION_MIN_TOKENS, ACTION_MAX_TOKENS)
    bare = action_prompt(backend, data, text, language, path, "")
    room = room_left(backend, bare, max_tokens, f"the code to rewrite (lines {data.start_line + 1}-"
                                                 f"{data.end_line + 1})")
    built = action_prompt(backend, data, text, language, path, context_for(room)) if room > 0 else bare
    if built is not bare and room_left(backend, built, max_tokens, "the code and its context") < 0:
        built = bare  # the context's estimate ran over: the code itself matters more
    opts = GenOptions(max_tokens=max_tokens, temperature=0.0, stop=built.stop, lookup=LOOKUP_TOKENS)
    job.stats.task = data.action
    answer = generate(backend, built, opts, job, on_text, key=f"action:{data.uri}")
    return edits.plan_replacement(text, data.start_line, data.end_line, answer, language, built.prefill)


def room_left(backend: Backend, built: BuiltPrompt, max_tokens: int, what: str) -> int:
    """Tokens the model's context has left beyond the prompt and its answer.

    Raises when not even this prompt fits: a backend would cut its start (llama.cpp drops the
    oldest tokens), and an answer to a prompt that lost its instruction must never be applied.
    """
    sent = built.text if built.text.strip() else "\n".join(content for _, content in built.messages)
    n_ctx = backend.info.n_ctx
    left = n_ctx - PROMPT_MARGIN_TOKENS - max_tokens - backend.count_tokens(sent)
    if left < 0:
        needed = n_ctx - left - PROMPT_MARGIN_TOKENS
        raise PromptTooLongError(f"{what} needs {needed} tokens with its answer; the chat model's "
                                 f"context holds {n_ctx} (raise model.nCtx or use a larger model)")
    return left


def gather_context(engine: ContextEngineAPI | None, path: Path, text: str, line: int, budget: int,
                   count_tokens: Callable[[str], int] | None) -> str:
    """Cross-file context for a line (the definitions the code there uses), rendered; "" without."""
    if engine is None or budget <= 0:
        return ""
    try:
        packed = engine.query(path, text, line, 0, budget, count_tokens, None)
        return engine.render(packed, path, None)
    except Exception:  # context improves the answer; its failure must not cost the action
        log.exception("context retrieval failed for %s; running without it", path)
        return ""


def display_answer(partial: str, prefill: str) -> str:
    """The partial answer as progress shows it: the code so far, without the fence."""
    return edits.extract_code(partial, prefill) or partial
